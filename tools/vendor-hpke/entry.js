export { CipherSuite, HkdfSha256 } from "@hpke/core";
export { Chacha20Poly1305 } from "@hpke/chacha20poly1305";
export { XWing } from "@hpke/hybridkem-x-wing";
