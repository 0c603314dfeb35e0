package tpm

import (
	"errors"
	"fmt"
	"os"
)

// DefaultPath is the kernel's resource-managed TPM device.
const DefaultPath = "/dev/tpmrm0"

// EnvTPM names the environment variable that selects the TPM device.
const EnvTPM = "OCIKP_TPM"

// Path resolves the device to use: flag, then $OCIKP_TPM, then the
// recorded path (a key's), then DefaultPath.
func Path(flag, recorded string) string {
	switch {
	case flag != "":
		return flag
	case os.Getenv(EnvTPM) != "":
		return os.Getenv(EnvTPM)
	case recorded != "":
		return recorded
	}
	return DefaultPath
}

// MaxPCR is the highest PCR of a PC-client TPM.
const MaxPCR = 23

// CheckPCRs refuses a PCR list that is not increasing PCR numbers.
func CheckPCRs(pcrs []int) error {
	for i, p := range pcrs {
		if p < 0 || p > MaxPCR {
			return fmt.Errorf("PCR %d: PCRs are numbered 0 to %d", p, MaxPCR)
		}
		if i > 0 && p <= pcrs[i-1] {
			return errors.New("PCRs must be listed once each, in increasing order")
		}
	}
	return nil
}
