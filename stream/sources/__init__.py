"""Live video sources: FFmpeg (any URL it opens) and WebRTC publishers, and the frames
they hand over. Sources know nothing of what is done with their frames."""
