"""handover: Sunbird asset ownership transfer and PII clean-up."""
