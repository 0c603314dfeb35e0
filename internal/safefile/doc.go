// Package safefile reads the files ocikp takes keys and key records from,
// and decides whether a keystore can be trusted.
//
// A file is opened without following a symbolic link in its last component
// and without blocking (a FIFO or a device never hangs a call), checked to
// be a regular file with fstat on the open descriptor (so what is checked
// is what is read), and read with a size bound. Trust is decided from the
// same fstat: a file or directory that another user can write, or that
// another non-root user owns, could have been planted, and is refused with
// the chmod or chown that fixes it.
package safefile
