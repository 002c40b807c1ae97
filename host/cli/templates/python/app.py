"""{{name}}: a Plexus plugin in Python.

Test it with `pytest`, build it with `plexus plugin pack` (a WASM component
carrying CPython), then try it:
`plexus call --artifact <artifact> greet --params '{"name": "Ada"}'`.
"""

from plexus_sdk import Context, ErrorKind, Example, Plugin, PluginError, capability

# Keep `version` equal to pyproject.toml's: the build checks.
plugin = Plugin(
    id="{{id}}",
    name="{{name}}",
    version="0.1.0",
    description="A Plexus plugin",
    license="Apache-2.0",
    capabilities=[capability.WORKFLOW_STEP],
)


@plugin.operation(
    examples=[
        Example({"name": "Ada"}, {"greeting": "Hello, Ada!"}, description="greets Ada"),
        Example({"name": ""}, error=ErrorKind.INVALID_INPUT, description="refuses an empty name"),
    ]
)
def greet(ctx: Context, name: str) -> dict:
    """Greets `name`.

    Args:
        name: who to greet.
    """
    if not name:
        raise PluginError.invalid_input("`name` is empty")
    ctx.log.info(f"greeting {name}")
    return {"greeting": f"Hello, {name}!"}
