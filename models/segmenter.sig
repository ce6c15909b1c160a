{
  "format": "karyoscreen-bundle-signature-v1",
  "key_id": "58c657399a859980",
  "public_key": "58c657399a859980c8dfe9c7da481771812d05e0b2d8eb0c2afc6048acacfecd",
  "onnx_sha256": "88f19ce15ea973edd08c52d49188edd4258ae8667bd8081ffd19a2e4cb4ec906",
  "card_sha256": "68d4aebfb8f52cd5224c32283ff6af93cbbbfa20e67ea3415e2f9dcde36f649e",
  "signature": "6244bfd6f9d01348fac11f8bfd48e5b8e5eb6df981c3bf60db5dc3216b6da7796dc7a60bffcbe6ecf87e28fedcabf2bff20b346456d91a9a530548f9e9892e04"
}
