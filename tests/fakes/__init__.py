"""Local fakes of outside services (OpenClaw gateway, Telegram, Anthropic...) for the tests, on loopback."""
