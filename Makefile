# Two commands a newcomer needs:  `make demo` (image -> scene with the shipped model)
# and `make test`. Both create .venv on first use.
# `make extension` needs only the small venv below (bpy + the NumPy it brings, no torch).
PY      ?= python3.11
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# the small venv: what an artist's Blender has; the tests build the same one (tests/conftest.py)
BPY_VENV  := .cache/venv-bpy
BPY_PY    := $(BPY_VENV)/bin/python
BPY_STAMP := $(BPY_VENV)/.installed
# keep bpy and HF caches out of the user's home, never touch the network
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: venv demo test extension train-default bench clean

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	# torch first, by exact pin (picks the CPU build)
	$(VPY) -m pip install -q "$$(grep -E '^torch==' requirements.txt)"
	$(VPY) -m pip install -q -r requirements.txt
	# make the repo root importable as the package `ig_llm` (the root is the extension)
	mkdir -p $(VENV)/src && ln -sfn "$(CURDIR)" $(VENV)/src/ig_llm
	echo "$(CURDIR)/$(VENV)/src" > "$$($(VPY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/ig_llm_src.pth"
	touch $(STAMP)

demo: $(STAMP)
	$(VPY) -m ig_llm demo

test: $(STAMP)
	$(VPY) -m pytest -q tests

$(BPY_STAMP): requirements.txt
	test -x $(BPY_PY) || $(PY) -m venv $(BPY_VENV)
	$(BPY_PY) -m pip install -q --disable-pip-version-check "$$(grep -E '^bpy==' requirements.txt)"
	touch $(BPY_STAMP)

# builds and validates dist/ig_llm-<version>.zip and one zip per platform with Blender's
# own tool; the repo root is put on the path as `ig_llm` for this one command only
extension: $(BPY_STAMP)
	src="$$(mktemp -d)" && ln -s "$(CURDIR)" "$$src/ig_llm" && \
	PYTHONPATH="$$src" $(BPY_PY) -m ig_llm package --out dist --split-platforms; \
	status=$$?; rm -rf "$$src"; exit $$status

train-default: $(STAMP)
	$(VPY) -m ig_llm train-default

bench: $(STAMP)
	$(VPY) -m ig_llm bench render
	$(VPY) -m ig_llm bench model

clean:
	rm -rf $(VENV) $(BPY_VENV) dist
