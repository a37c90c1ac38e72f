//go:build e2e && linux

package e2e

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The Linux process connector (include/uapi/linux/cn_proc.h, connector.h): a netlink socket
// on which the kernel reports every fork, exec and exit of the machine to root.
const (
	cnIdxProc         = 0x1 // CN_IDX_PROC
	cnValProc         = 0x1 // CN_VAL_PROC
	procCnMcastListen = 1   // PROC_CN_MCAST_LISTEN
	procCnMcastIgnore = 2   // PROC_CN_MCAST_IGNORE
	procEventExec     = 0x2 // PROC_EVENT_EXEC

	nlmsgHdrLen = 16 // struct nlmsghdr
	cnMsgLen    = 20 // struct cn_msg without data
)

// execListener reports the PID of every exec on the machine.
type execListener struct {
	fd   int
	stop atomic.Bool
	done chan struct{}
	once sync.Once
}

// listenExecs subscribes to exec events; it fails unless run as root on the host's
// namespaces.
func listenExecs() (*execListener, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("open process connector: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc, Pid: uint32(os.Getpid())}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind process connector: %w", err)
	}
	// Wake up now and then to notice close: a blocked read is not woken by closing its socket.
	tv := unix.Timeval{Usec: 100_000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set process connector timeout: %w", err)
	}
	l := &execListener{fd: fd, done: make(chan struct{})}
	if err := l.control(procCnMcastListen); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return l, nil
}

// control sends PROC_CN_MCAST_LISTEN or _IGNORE.
func (l *execListener) control(op uint32) error {
	msg := make([]byte, nlmsgHdrLen+cnMsgLen+4)
	le := binary.LittleEndian
	le.PutUint32(msg[0:], uint32(len(msg)))     // nlmsg_len
	le.PutUint16(msg[4:], unix.NLMSG_DONE)      // nlmsg_type
	le.PutUint32(msg[12:], uint32(os.Getpid())) // nlmsg_pid
	cn := msg[nlmsgHdrLen:]
	le.PutUint32(cn[0:], cnIdxProc)
	le.PutUint32(cn[4:], cnValProc)
	le.PutUint16(cn[16:], 4) // len of data
	le.PutUint32(cn[cnMsgLen:], op)
	if err := unix.Sendto(l.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("subscribe to the process connector: %w", err)
	}
	return nil
}

// run calls exec with the PID of each exec until close.
func (l *execListener) run(exec func(pid int)) {
	defer close(l.done)
	buf := make([]byte, 64<<10)
	le := binary.LittleEndian
	for {
		if l.stop.Load() {
			return
		}
		n, _, err := unix.Recvfrom(l.fd, buf, 0)
		if err == unix.EINTR || err == unix.EAGAIN || err == unix.ENOBUFS {
			continue // ENOBUFS: events were dropped; the /proc sweeps remain
		}
		if err != nil {
			return
		}
		for off := 0; off+nlmsgHdrLen <= n; {
			size := int(le.Uint32(buf[off:]))
			if size < nlmsgHdrLen || off+size > n {
				break
			}
			ev := buf[off+nlmsgHdrLen+cnMsgLen : off+size]
			// struct proc_event: what u32, cpu u32, timestamp u64, then exec's pid, tgid.
			if len(ev) >= 24 && le.Uint32(ev[0:]) == procEventExec {
				exec(int(le.Uint32(ev[16:])))
			}
			off += (size + 3) &^ 3
		}
	}
}

func (l *execListener) close() {
	l.once.Do(func() {
		l.stop.Store(true)
		<-l.done
		_ = l.control(procCnMcastIgnore)
		unix.Close(l.fd)
	})
}
