"""Names shared by the Blender-side modules."""
# `bl_ext.user_default.ig_llm` when installed as an extension, `ig_llm` from the venv:
# the add-on's preferences and user folder are keyed by this name.
ROOT_PACKAGE = __package__.rpartition(".")[0]
CATEGORY = "IG-LLM"
