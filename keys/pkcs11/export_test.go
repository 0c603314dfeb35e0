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
func KeptStarts() int { return kept.Starts() }

func KeptPID() int { return kept.PID() }
