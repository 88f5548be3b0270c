"""Virtual CPEs that speak CWMP to the ACS: templates, behaviour, fleet and load mode."""
