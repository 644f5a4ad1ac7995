"""The pure core: event parsing, validation and the transfer / clean-up rules. Imports no driver."""
