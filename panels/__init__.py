"""Blender UI: property groups, add-on preferences and the View3D sidebar panel (bpy only)."""
