"""Bundled eaters (installed as ``netdumplings.eaters``): print, hubstatus, hubdetails, web."""
