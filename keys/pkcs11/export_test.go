package pkcs11

// Test hooks for the kept companion.

// SetKeep turns the kept companion on or off; off also ends it.
func SetKeep(on bool) {
	keep.Store(on)
	if !on {
		StopCompanion()
	}
}

// KeptStarts counts the kept companion's starts; KeptPID is its process.
func KeptStarts() int {
	kept.mu.Lock()
	defer kept.mu.Unlock()
	return kept.starts
}

func KeptPID() int {
	kept.mu.Lock()
	defer kept.mu.Unlock()
	if kept.cmd == nil {
		return 0
	}
	return kept.cmd.Process.Pid
}
