import sys
from pathlib import Path

# the test plugins (tests/analytic_domain.py) are importable as top-level modules, also in
# verifier child processes, which inherit sys.path through PYTHONPATH
sys.path.insert(0, str(Path(__file__).parent))
