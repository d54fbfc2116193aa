"""A trained generator outside its run: export it, load it anywhere, explore it in the browser.

`hub` is the Hub layout (writing it, loading it, `Generator.from_pretrained`), `folder` checks an
exported folder before anything is built from it, `export` writes one with its model card (and
holds the `onnx` format's code), `serve` is the latent-space explorer, `cli` their commands. The
formats are a table below this package, `dcgan.formats.EXPORT_FORMATS`: `checkpoint` and `models`
reach this package only through it.
"""
