{
  "format": "karyoscreen-bundle-signature-v1",
  "key_id": "b7af5264b2b38e50",
  "public_key": "b7af5264b2b38e50bbe4239ac69e8699d30d2bc04b45a4937d85e2ab445aca7a",
  "onnx_sha256": "b06c5995a2e8078ba0d495c2e6a38109246f98acb2e68ef65ff3aad44ae475b7",
  "card_sha256": "0e8b0edef6cf7fd4ada1e87f79389fa4407bbf618d8214c2dac66758e63637db",
  "signature": "b6c0658f1ce88721d64c5f70d5954ad62a5b9fd354bb00c7c1d91ab1193a05be9aaa174ae1acf504cf15f18c8228de7f87bc17e702b91bdad24d089d4a5acf05"
}
