# Two commands do all their own set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: demo quick test test-slow lint data browser venv clean

venv: $(STAMP)

# torch/torchvision come from pip (ranges in pyproject.toml); never uv/poetry for torch here.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# Real Fashion-MNIST without a download: Debian's dataset-fashion-mnist where apt is there
# (as root); elsewhere torchvision downloads it on first use.
data:
	@if [ -d $(FMNIST) ]; then echo "Fashion-MNIST: $(FMNIST)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	  || echo "apt-get could not install dataset-fashion-mnist; torchvision will download Fashion-MNIST"; \
	else echo "no $(FMNIST) and no root apt-get; torchvision will download Fashion-MNIST on first use"; fi

# Headless Chromium + chromedriver for the explorer's browser tests (tests/test_share_browser.py):
# Debian's packages where apt is there (as root); elsewhere those tests skip and say why.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then echo "Chromium: /usr/bin/chromium"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "apt-get could not install chromium chromium-driver; the browser tests will skip"; \
	else echo "no /usr/bin/chromium and no root apt-get; the browser tests will skip"; fi

# A short Fashion-MNIST training on CPU (a few minutes): grids, curves, checkpoint in runs/.
demo: $(STAMP) data
	$(PY) -m dcgan train --config configs/fashion_mnist.yaml

# A first run of about a minute: the demo's outputs after 300 small steps.
quick: $(STAMP) data
	$(PY) -m dcgan train --config configs/fashion_mnist_quick.yaml

test: $(STAMP) data browser
	$(PY) -m pytest -q

test-slow: $(STAMP) data
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf $(VENV) build *.egg-info
