# Two commands a newcomer needs:  `make demo` (image -> scene with the shipped model)
# and `make test`. Both create .venv on first use.
PY      ?= python3.11
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
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

extension: $(STAMP)
	$(VPY) -m ig_llm package --out dist --split-platforms

train-default: $(STAMP)
	$(VPY) -m ig_llm train-default

bench: $(STAMP)
	$(VPY) -m ig_llm bench render
	$(VPY) -m ig_llm bench model

clean:
	rm -rf $(VENV) dist
