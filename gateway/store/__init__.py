"""Block lists, the audit log and receipt routes, behind one Store protocol."""
