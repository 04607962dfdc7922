"""Session-wide test isolation: bpy and HF caches go to temporary folders, no hub access."""
import os
import tempfile

os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="ig_llm_blender_user_")
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="ig_llm_cache_")
os.environ["HF_HUB_OFFLINE"] = "1"
