"""Front ends: translate between a wire protocol and the chat core."""
