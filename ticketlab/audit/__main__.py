"""``python -m ticketlab.audit``: run the robustness audit (see ``ticketlab.audit``)."""

import sys

from .runner import main

sys.exit(main())
