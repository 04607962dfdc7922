"""Blender operators (Import > Image to Scene, run/cancel, rebuild, install runtime).

`task`, `deps` are plain Python (no bpy) and run in worker threads; `apply` and the
operator modules run on Blender's main thread.
"""
