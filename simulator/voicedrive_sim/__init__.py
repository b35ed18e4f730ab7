"""voicedrive-sim: a stand-in for the VoiceDrive API with run-time fault injection."""
