"""IG-LLM for Blender (extension entry point).

Kept thin on purpose: importing this package must not import bpy or torch, so that
`python -m ig_llm` and the GPU training machine (no bpy there) can use the subpackages.
register()/unregister() import the Blender-side modules lazily.
"""
