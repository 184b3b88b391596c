import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # ddp_worker holds the tiny model shared with the DDP test
