# Copyright: maillab.mailserver contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attribute texts the modules of maillab.mailserver share.

A module extends maillab.mailserver.attributes (what each attribute means)
and the fragments below that say how far it supports them; its own
attributes entries add the details only it can give.
"""

from __future__ import annotations


class ModuleDocFragment(object):

    # What each attribute means; use with the fragments below or with the
    # module's own support entries.
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run with C(--check), reporting what it would do without changing the target.
  diff_mode:
    description: Shows what it changed (or would change in check mode) when run with C(--diff).
  idempotent:
    description:
      - Run twice in a row with the same arguments outside check mode, the second run reports no change.
      - This holds as long as nothing else changed the target in between.
'''

    # Full check mode support; the module's own check_mode details say what a
    # check run still does.
    CHECK_MODE_FULL = r'''
options: {}
attributes:
  check_mode:
    support: full
'''

    # No diff output.
    DIFF_NONE = r'''
options: {}
attributes:
  diff_mode:
    support: none
'''

    # A module that checks a service and never reports a change.
    REPORTS_NO_CHANGE = r'''
options: {}
attributes:
  idempotent:
    support: full
    details:
      - It always returns C(changed=false).
'''
