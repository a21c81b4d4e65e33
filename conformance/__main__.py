"""python -m conformance --bin-dir DIR [pytest options]: the black-box suite against any plugin directory."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.exit(pytest.main(["-p", "conformance.fixtures", "--rootdir", HERE, "-c", os.devnull, "-m", "conformance", HERE, *sys.argv[1:]]))
