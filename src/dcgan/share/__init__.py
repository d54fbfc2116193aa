"""A trained generator outside its run: export it, load it anywhere, explore it in the browser.

`hub` is the exported folder's format (Hugging Face Hub layout), `export` writes one with its
model card and optional ONNX file, `serve` is the latent-space explorer, `cli` their commands.
"""
