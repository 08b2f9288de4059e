package harness

import (
	"fmt"
	"sync"
	"syscall"
)

// Reservation holds a loopback port so no other process's bind(0) gets it,
// while a server that binds with SO_REUSEPORT (Envoy does, by default on
// Linux) still can: the socket is bound, never listening, so it takes no
// connections. Release it once that server is up.
type Reservation struct {
	// Port is the reserved port.
	Port int
	fd   int
	once sync.Once
}

// ReservePort reserves a free loopback port until Release.
func ReservePort() (*Reservation, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reserve port: %w", err)
	}
	for _, opt := range []int{syscall.SO_REUSEADDR, 0xf /* SO_REUSEPORT */} {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, opt, 1); err != nil {
			syscall.Close(fd)
			return nil, fmt.Errorf("reserve port: %w", err)
		}
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("reserve port: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("reserve port: %w", err)
	}
	return &Reservation{Port: sa.(*syscall.SockaddrInet4).Port, fd: fd}, nil
}

// Release frees the port; it is idempotent.
func (r *Reservation) Release() {
	r.once.Do(func() { syscall.Close(r.fd) })
}
