"""Wearable device simulator and microcontroller budget check. Never imports torch."""
