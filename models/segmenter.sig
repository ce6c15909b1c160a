{
  "format": "karyoscreen-bundle-signature-v1",
  "key_id": "58c657399a859980",
  "public_key": "58c657399a859980c8dfe9c7da481771812d05e0b2d8eb0c2afc6048acacfecd",
  "onnx_sha256": "da0f584a7a41bbc42928884a402d8ea057d66962e6e685f8af2626e671185fd6",
  "card_sha256": "519f2d0d366f82d5cd0c8e568e35b728b989a65e6c786693de9bda2819bec6cd",
  "signature": "ead8767536576c6fead73bed0fd7ad2cd5f1f611592b898c7dc042c151b948511cba263a701b745b6ae3d0dd396ba56411def9dad0564c2a5c84d7974a9f4e0e"
}
