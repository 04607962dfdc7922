"""Every training command line comes from the recipe module (issue #22): the experiments'
lines are built by training/recipe.py's stage1_argv / stage2_argv, and nothing else in the
package writes a `train` command line by hand."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_module_but_the_recipe_writes_train_flags():
    train_line = re.compile(r"""["']train["'],\s*["']--""")      # ["train", "--data", ...]
    writers = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("training/**/*.py"), *ROOT.glob("tools/*.py")]
                     if train_line.search(p.read_text()) and p.name != "recipe.py")
    assert writers == []
    assert train_line.search((ROOT / "training" / "recipe.py").read_text())
