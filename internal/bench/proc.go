package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

// ProcStat is what /proc says about a process at one moment.
type ProcStat struct {
	CPU     time.Duration // user + system time so far
	RSS     int64         // bytes (VmRSS)
	HWM     int64         // bytes (VmHWM: peak RSS since start or the last ResetPeak)
	RSSFile int64         // bytes of RSS that are file pages (RssFile: the binary's, mostly)
	Threads int
}

// ReadProc reads /proc/PID/stat and /proc/PID/status.
func ReadProc(pid int) (ProcStat, error) {
	var st ProcStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return st, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return st, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return st, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	st.CPU = time.Duration(ut+stime) * time.Second / clockTicks
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	sc := bufio.NewScanner(bytes.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch k {
		case "VmRSS":
			st.RSS = n << 10
		case "VmHWM":
			st.HWM = n << 10
		case "RssFile":
			st.RSSFile = n << 10
		case "Threads":
			st.Threads = int(n)
		}
	}
	return st, nil
}

// ResetPeak resets the process's VmHWM to its current RSS.
func ResetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// CountFDs is the number of open file descriptors of pid.
func CountFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// WaitFDs waits until pid has at most n open descriptors (the server has
// closed what the clients left), polling: a process gives no other sign.
func WaitFDs(pid, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := CountFDs(pid)
		if err != nil {
			return err
		}
		if got <= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still has %d open descriptors after %s (want <= %d)", pid, got, timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Machine describes where a benchmark ran.
type Machine struct {
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	MemoryMB int64  `json:"memory_mb"`
	Kernel   string `json:"kernel"`
	OS       string `json:"os"`
	Go       string `json:"go"`
	Upstream string `json:"upstream"`
	Date     string `json:"date"`
}

// ThisMachine collects the machine description from /proc and /etc.
func ThisMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), Date: time.Now().UTC().Format(time.RFC3339)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				f := strings.Fields(l)
				if len(f) > 1 {
					kb, _ := strconv.ParseInt(f[1], 10, 64)
					m.MemoryMB = kb >> 10
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	m.Upstream = upstreamVersion()
	return m
}
