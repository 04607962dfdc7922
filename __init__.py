"""IG-LLM for Blender (extension entry point).

Kept thin on purpose: importing this package must not import bpy or torch, so that
`python -m ig_llm` and the GPU training machine (no bpy there) can use the subpackages.
register()/unregister() import the Blender-side modules lazily.
"""

_state = {"classes": (), "cli": None, "site": None}


def _classes():
    """Every bpy class, in registration order (property groups before their users)."""
    from .operators import image_to_scene, install_runtime
    from .panels import preferences, properties, sidebar

    return (properties.classes + preferences.classes + image_to_scene.classes
            + install_runtime.classes + sidebar.classes)


def _cli(argv):
    """`blender --background --command ig_llm <command> …` -> the same CLI as `python -m ig_llm`."""
    from .cli import main

    return main(list(argv))


def register():
    import bpy

    from .operators import deps, image_to_scene, install_runtime
    from .panels import properties

    # the optional torch runtime a user installed from the preferences (appended:
    # Blender's own packages, e.g. numpy, keep priority)
    site = install_runtime.user_site_packages(create=False)
    if site and deps.add_to_sys_path(site):
        _state["site"] = site
    classes = _classes()
    for cls in classes:
        bpy.utils.register_class(cls)
    _state["classes"] = classes
    properties.register_properties()
    bpy.types.TOPBAR_MT_file_import.append(image_to_scene.menu_import)
    _state["cli"] = bpy.utils.register_cli_command("ig_llm", _cli)


def unregister():
    import bpy

    from .jobs import REGISTRY
    from .operators import deps, image_to_scene
    from .panels import properties

    REGISTRY.clear()  # a job must not outlive its add-on
    if _state["cli"] is not None:
        bpy.utils.unregister_cli_command(_state["cli"])
        _state["cli"] = None
    bpy.types.TOPBAR_MT_file_import.remove(image_to_scene.menu_import)
    properties.unregister_properties()
    for cls in reversed(_state["classes"]):
        bpy.utils.unregister_class(cls)
    _state["classes"] = ()
    if _state["site"]:
        deps.remove_from_sys_path(_state["site"])
        _state["site"] = None
