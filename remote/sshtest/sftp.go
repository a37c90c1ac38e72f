package sshtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// SFTP packet types used by the shim (draft-ietf-secsh-filexfer-02).
const (
	fxpVersion  = 2
	fxpOpen     = 3
	fxpClose    = 4
	fxpRead     = 5
	fxpWrite    = 6
	fxpSetstat  = 9
	fxpFsetstat = 10
	fxpRemove   = 13
	fxpMkdir    = 14
	fxpRmdir    = 15
	fxpRename   = 18
	fxpStatus   = 101
	fxpHandle   = 102
	fxpExtended = 200

	fxfWrite = 0x02 // SSH_FXF_WRITE
	fxfCreat = 0x08 // SSH_FXF_CREAT
	fxfExcl  = 0x20 // SSH_FXF_EXCL

	attrPermissions = 0x04 // SSH_FILEXFER_ATTR_PERMISSIONS
	attrSize        = 0x01
	attrUIDGID      = 0x02

	fxOK            = 0
	fxFailure       = 4
	fxOpUnsupported = 8

	extFsync       = "fsync@openssh.com"
	extPosixRename = "posix-rename@openssh.com"
	// maxPacket bounds one SFTP packet; pkg/sftp and OpenSSH stay far below it.
	maxPacket = 4 << 20
)

// serverExtensions are the extended requests pkg/sftp's server answers.
var serverExtensions = map[string]bool{
	"posix-rename@openssh.com": true,
	"statvfs@openssh.com":      true,
	"hardlink@openssh.com":     true,
}

// sftpShim sits between the SSH channel and pkg/sftp's server. pkg/sftp's
// server (v1.13) does not implement fsync@openssh.com (it silently drops the
// request), so the shim advertises it in the VERSION reply and answers it
// itself by fsyncing the file behind the handle. It also counts WRITE payload
// bytes for Server.CutAfterBytes and records file operations (Server.Ops).
type sftpShim struct {
	srv  *Server
	conn net.Conn    // the TCP connection, closed to simulate a cut
	ch   ssh.Channel // the client side

	wmu sync.Mutex // serialises packets written to ch

	mu      sync.Mutex
	pending map[uint32]string // OPEN request id -> path
	handles map[string]string // handle -> path

	cutting bool
	budget  int64 // WRITE payload bytes still allowed through when cutting
}

// serveSFTP runs the sftp subsystem on ch until either side ends it.
func (s *Server) serveSFTP(conn net.Conn, ch ssh.Channel) {
	sh := &sftpShim{srv: s, conn: conn, ch: ch, pending: map[uint32]string{}, handles: map[string]string{}}
	c2sR, c2sW := io.Pipe()
	s2cR, s2cW := io.Pipe()
	var opts []sftp.ServerOption
	if s.cfg.Dir != "" {
		opts = append(opts, sftp.WithServerWorkingDirectory(s.cfg.Dir))
	}
	server, err := sftp.NewServer(pipeRWC{r: c2sR, w: s2cW}, opts...)
	if err != nil {
		fmt.Fprintf(ch.Stderr(), "sshtest: start sftp server: %v\n", err)
		finish(ch, 1)
		return
	}
	go func() {
		server.Serve()
		server.Close()
		s2cW.Close()
		c2sR.Close()
	}()
	go func() {
		err := sh.clientToServer(c2sW)
		c2sW.CloseWithError(err)
	}()
	sh.serverToClient(s2cR)
	s2cR.Close()
	finish(ch, 0)
}

// pipeRWC joins the two pipe ends pkg/sftp's server talks through.
type pipeRWC struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func (p pipeRWC) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p pipeRWC) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p pipeRWC) Close() error {
	p.r.Close()
	return p.w.Close()
}

// readPacket reads one length-prefixed SFTP packet (type byte + payload).
func readPacket(r io.Reader) ([]byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(l[:])
	if n == 0 || n > maxPacket {
		return nil, fmt.Errorf("sftp packet length %d out of range", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func writePacket(w io.Writer, body []byte) error {
	b := make([]byte, 4, 4+len(body))
	binary.BigEndian.PutUint32(b, uint32(len(body)))
	_, err := w.Write(append(b, body...))
	return err
}

func (sh *sftpShim) toClient(body []byte) error {
	sh.wmu.Lock()
	defer sh.wmu.Unlock()
	return writePacket(sh.ch, body)
}

// parser reads SFTP wire fields from a packet payload.
type parser struct {
	b   []byte
	err error
}

func (p *parser) uint32() uint32 {
	if len(p.b) < 4 {
		p.err = errors.New("short sftp packet")
		return 0
	}
	v := binary.BigEndian.Uint32(p.b)
	p.b = p.b[4:]
	return v
}

func (p *parser) uint64() uint64 {
	hi, lo := p.uint32(), p.uint32()
	return uint64(hi)<<32 | uint64(lo)
}

func (p *parser) string() string {
	n := p.uint32()
	if p.err != nil || uint32(len(p.b)) < n {
		p.err = errors.New("short sftp packet")
		return ""
	}
	v := string(p.b[:n])
	p.b = p.b[n:]
	return v
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// clientToServer forwards client packets to pkg/sftp, answering fsync itself
// and enforcing an armed cut.
func (sh *sftpShim) clientToServer(w io.Writer) error {
	for {
		pkt, err := readPacket(sh.ch)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		p := parser{b: pkt[1:]}
		switch pkt[0] {
		case fxpOpen:
			id, path, flags := p.uint32(), p.string(), p.uint32()
			if p.err == nil {
				path = sh.localPath(path)
				sh.mu.Lock()
				sh.pending[id] = path
				sh.mu.Unlock()
				sh.srv.recordOp(Op{Kind: OpOpen, Path: path, Write: flags&fxfWrite != 0, Create: flags&fxfCreat != 0, Excl: flags&fxfExcl != 0})
			}
		case fxpClose:
			p.uint32()
			handle := p.string()
			sh.mu.Lock()
			path, ok := sh.handles[handle]
			delete(sh.handles, handle)
			sh.mu.Unlock()
			if ok {
				sh.srv.recordOp(Op{Kind: OpClose, Path: path})
			}
		case fxpRead:
			p.uint32()
			handle := p.string()
			p.uint64()
			n := p.uint32()
			if path, ok := sh.path(handle); ok && p.err == nil {
				sh.srv.recordOp(Op{Kind: OpRead, Path: path, Len: int(n)})
			}
		case fxpSetstat, fxpFsetstat:
			p.uint32()
			name := p.string()
			path, ok := sh.localPath(name), true
			if pkt[0] == fxpFsetstat {
				path, ok = sh.path(name)
			}
			if op, err := setstatOp(path, &p); ok && err == nil {
				sh.srv.recordOp(op)
			}
		case fxpRemove:
			p.uint32()
			if path := p.string(); p.err == nil {
				sh.srv.recordOp(Op{Kind: OpRemove, Path: sh.localPath(path)})
			}
		case fxpMkdir, fxpRmdir:
			p.uint32()
			if path := p.string(); p.err == nil {
				kind := OpMkdir
				if pkt[0] == fxpRmdir {
					kind = OpRmdir
				}
				sh.srv.recordOp(Op{Kind: kind, Path: sh.localPath(path)})
			}
		case fxpRename:
			p.uint32()
			if from, to := p.string(), p.string(); p.err == nil {
				sh.srv.recordOp(Op{Kind: OpRename, Path: sh.localPath(from), To: sh.localPath(to)})
			}
		case fxpWrite:
			p.uint32()
			handle := p.string()
			p.uint64()
			data := p.string()
			if p.err != nil {
				break
			}
			if path, ok := sh.path(handle); ok {
				sh.srv.recordOp(Op{Kind: OpWrite, Path: path, Len: len(data)})
			}
			if sh.cut(int64(len(data))) {
				sh.conn.Close()
				return errors.New("connection cut by sshtest")
			}
			if len(data) > 0 && sh.srv.takeCorrupt() {
				// The payload is the packet's tail: flip its last byte.
				pkt[len(pkt)-1] ^= 0xff
			}
		case fxpExtended:
			id, name := p.uint32(), p.string()
			var reply []byte
			switch {
			case name == extFsync && !sh.srv.cfg.NoFsync:
				reply = sh.fsync(id, p.string())
			case name == extPosixRename:
				if from, to := p.string(), p.string(); p.err == nil {
					sh.srv.recordOp(Op{Kind: OpRename, Path: sh.localPath(from), To: sh.localPath(to)})
				}
			case !serverExtensions[name]:
				// pkg/sftp drops unknown extended requests without an
				// answer; OpenSSH answers "unsupported".
				reply = statusPacket(id, fxOpUnsupported, "unsupported extended request "+name)
			}
			if reply != nil {
				if err := sh.toClient(reply); err != nil {
					return err
				}
				continue
			}
		}
		if err := writePacket(w, pkt); err != nil {
			return err
		}
	}
}

// cut reports whether a WRITE carrying n payload bytes must cut the
// connection instead of being forwarded.
func (sh *sftpShim) cut(n int64) bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !sh.cutting {
		budget, ok := sh.srv.takeCut()
		if !ok {
			return false
		}
		sh.cutting, sh.budget = true, budget
	}
	if n > sh.budget {
		return true
	}
	sh.budget -= n
	return false
}

// path returns the path the file behind handle was opened as.
func (sh *sftpShim) path(handle string) (string, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	path, ok := sh.handles[handle]
	return path, ok
}

// setstatOp parses the attributes of a SETSTAT/FSETSTAT into an Op.
func setstatOp(path string, p *parser) (Op, error) {
	op := Op{Kind: OpSetstat, Path: path}
	flags := p.uint32()
	if flags&attrSize != 0 {
		p.uint64()
	}
	if flags&attrUIDGID != 0 {
		p.uint32()
		p.uint32()
	}
	if flags&attrPermissions != 0 {
		op.Mode, op.HasMode = fs.FileMode(p.uint32()&0o777), true
	}
	return op, p.err
}

// fsync answers an fsync@openssh.com request with a STATUS packet.
func (sh *sftpShim) fsync(id uint32, handle string) []byte {
	path, ok := sh.path(handle)
	if ok {
		sh.srv.recordOp(Op{Kind: OpFsync, Path: path})
	}
	err := errors.New("unknown handle")
	if ok {
		var f *os.File
		if f, err = os.Open(path); err == nil {
			err = f.Sync()
			f.Close()
		}
	}
	if err != nil {
		return statusPacket(id, fxFailure, "fsync: "+err.Error())
	}
	return statusPacket(id, fxOK, "")
}

// statusPacket builds an SSH_FXP_STATUS reply.
func statusPacket(id, code uint32, msg string) []byte {
	b := []byte{fxpStatus}
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, code)
	b = appendString(b, msg)
	return appendString(b, "")
}

// localPath resolves an SFTP path the way pkg/sftp's server does.
func (sh *sftpShim) localPath(p string) string {
	if !filepath.IsAbs(p) && sh.srv.cfg.Dir != "" {
		return filepath.Join(sh.srv.cfg.Dir, p)
	}
	return p
}

// serverToClient forwards pkg/sftp's replies, adding fsync@openssh.com to the
// VERSION reply and learning which handle belongs to which path.
func (sh *sftpShim) serverToClient(r io.Reader) {
	for {
		pkt, err := readPacket(r)
		if err != nil {
			return
		}
		p := parser{b: pkt[1:]}
		switch pkt[0] {
		case fxpVersion:
			if !sh.srv.cfg.NoFsync {
				pkt = appendString(appendString(pkt, extFsync), "1")
			}
		case fxpHandle:
			id, handle := p.uint32(), p.string()
			sh.mu.Lock()
			path, ok := sh.pending[id]
			if ok && p.err == nil {
				sh.handles[handle] = path
			}
			delete(sh.pending, id)
			sh.mu.Unlock()
			if ok && p.err == nil {
				sh.srv.recordOp(Op{Kind: OpOpened, Path: path})
			}
		case fxpStatus:
			id := p.uint32()
			sh.mu.Lock()
			delete(sh.pending, id)
			sh.mu.Unlock()
		}
		if err := sh.toClient(pkt); err != nil {
			return
		}
	}
}
