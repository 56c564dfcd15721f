"""shipsft: supervised fine-tuning of open-weight LLMs that ships.

Library entry points (the CLI is a thin layer over these):

    from shipsft.data.render import render_conversation, load_renderer
    from shipsft.data.pack import pack_examples
    from shipsft.config import load_config
"""
__version__ = "0.1.0"
