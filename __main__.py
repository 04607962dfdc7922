"""`python -m ig_llm …` — the same command line as `blender --background --command ig_llm …`."""
import sys

from .cli import main

sys.exit(main())
