"""The systems we compare against, each installed and torn down by the harness.

Every module exposes ``run(quick: bool) -> dict`` returning figures, or
``{"skipped": "<why>"}`` when the peer cannot be installed or started. Installs
go into ``bench/.peers/`` (git-ignored), never into the project's environment.
"""
