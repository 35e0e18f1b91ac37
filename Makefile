# The README's commands. Each creates .venv and installs the project first when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
WEB    := services/realtime/web
NODE_STAMP := $(WEB)/node_modules/.installed-stamp
PROTOCOL := tests/protocol
PROTOCOL_STAMP := $(PROTOCOL)/node_modules/.installed-stamp
SDK    := clients/js
SDK_STAMP := $(SDK)/node_modules/.installed-stamp

.PHONY: dev test lint format clean constraints sdk sdk-types sdk-pack

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# Resolve the newest versions pyproject.toml allows into constraints.txt (in a scratch venv),
# for a deliberate upgrade: run `make test` on them before committing.
constraints:
	rm -rf .constraints-venv && $(PYTHON) -m venv .constraints-venv
	.constraints-venv/bin/python -m pip install --quiet --upgrade pip
	.constraints-venv/bin/python -m pip install --quiet -e '.[dev]'
	head -3 constraints.txt > constraints.new
	.constraints-venv/bin/python -m pip freeze --exclude-editable | grep -v '^liveboard' >> constraints.new
	mv constraints.new constraints.txt && rm -rf .constraints-venv

# The official socket.io-client for the demo page and the JS client tests, from the lock file.
$(NODE_STAMP): $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

# The JavaScript SDK @liveboard/client (clients/js): dev tools from its lock file, then tsc → dist/.
$(SDK_STAMP): $(SDK)/package.json $(SDK)/package-lock.json
	cd $(SDK) && npm ci --no-audit --no-fund --loglevel=error
	@touch $(SDK_STAMP)

sdk: $(SDK_STAMP)
	cd $(SDK) && npm run --silent build

# Regenerate the SDK's payload types from the services' pydantic models (tests/sdk fails when stale).
sdk-types: $(STAMP) $(SDK_STAMP)
	$(BIN)/python $(SDK)/scripts/dump_schemas.py
	cd $(SDK) && node scripts/gen-types.mjs && npm run --silent build

# The installable tarball, in clients/js/build/.
sdk-pack: sdk
	mkdir -p $(SDK)/build && cd $(SDK) && npm pack --silent --pack-destination build

# The Socket.IO authors' protocol test suites (mocha, ws, ...) for tests/protocol, from the lock file.
$(PROTOCOL_STAMP): $(PROTOCOL)/package.json $(PROTOCOL)/package-lock.json
	cd $(PROTOCOL) && npm ci --no-audit --no-fund --loglevel=error
	@touch $(PROTOCOL_STAMP)

dev: $(STAMP) $(NODE_STAMP)
	$(BIN)/liveboard dev $(ARGS)

test: $(STAMP) $(NODE_STAMP) sdk $(PROTOCOL_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check libs services liveboard tests

format: $(STAMP)
	$(BIN)/ruff format libs services liveboard tests
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
