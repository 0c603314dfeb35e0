// Command podapp is the one program in the kubelet test's images, so that
// they need no base image: "podapp cat FILE" prints a file of its image,
// "podapp sleep" waits for a signal, as a pod sandbox's pause process does.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	switch {
	case len(os.Args) == 3 && os.Args[1] == "cat":
		data, err := os.ReadFile(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "podapp:", err)
			os.Exit(1)
		}
		os.Stdout.Write(data)
	case len(os.Args) == 2 && os.Args[1] == "sleep":
		// PID 1 of its namespace: only signals it handles reach it.
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		<-c
	default:
		fmt.Fprintln(os.Stderr, "usage: podapp cat FILE | podapp sleep")
		os.Exit(2)
	}
}
