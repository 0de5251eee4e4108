# Two commands a new user needs: `make run` and `make test`. Everything they need is set
# up on first use (a .venv with the PyTorch wheel that provides libtorch), and nothing is
# redone the second time.
SHELL := /bin/bash
.DEFAULT_GOAL := run

VENV   := .venv
STAMP  := $(VENV)/.requirements-installed
# playwright-core for the browser test (tests/browser.rs), from the committed lock file.
BROWSER_STAMP := tests/browser/node_modules/.installed
BIN    := target/release/gradstream
# torch-sys finds libtorch through the venv's python (see .cargo/config.toml).
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1

.PHONY: run demo test bench setup build lint fmt clean

$(STAMP): requirements.txt
	@command -v python3 >/dev/null || { echo "python3 is required (3.10+)"; exit 1; }
	@command -v cargo >/dev/null || { echo "cargo is required (Rust 1.85+, https://rustup.rs)"; exit 1; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# Never lets Playwright download a browser: the test drives Debian's /usr/bin/chromium.
# Without npm the rest of the suite still runs and the browser test fails saying how to
# install it.
$(BROWSER_STAMP): tests/browser/package.json tests/browser/package-lock.json
	@if command -v npm >/dev/null; then \
	  cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
	  echo "npm not found: the browser test will fail; install it with: sudo apt-get install chromium nodejs npm, then run make setup"; \
	fi

setup: $(STAMP) $(BROWSER_STAMP)

build: $(STAMP)
	cargo build --release --locked

# Starts the server on 127.0.0.1:50051, prints the dashboard's address
# (http://127.0.0.1:8080/) and runs a demo job through the CLI, which the dashboard shows
# live; the server keeps running afterwards until Ctrl-C.
run: build
	scripts/demo.sh

# Same, but stops the server once the demo job ends.
demo: build
	DEMO_EXIT=1 scripts/demo.sh

# Every crate of the workspace: the pure ones (domain, metrics, data) need no libtorch.
test: $(STAMP) $(BROWSER_STAMP)
	cargo test --release --locked --workspace

bench: build
	cargo bench --locked --bench throughput
	cargo bench --locked --bench watchers
	cargo bench --locked --bench imbalance
	cargo bench --locked --bench diagnostics
	cargo bench --locked --bench digits
	cargo bench --locked --bench torchscript

lint: $(STAMP)
	cargo fmt --all --check
	cargo clippy --release --locked --workspace --all-targets -- -D warnings
	scripts/check-layers.sh

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf $(VENV)
