package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"dualledger/internal/scb"
)

const logName = "entries.log"

// record is one line of the log: one posted entry.
type record struct {
	Seq        int64     `json:"seq"`
	Key        string    `json:"key"`  // Idempotency-Key
	Hash       string    `json:"hash"` // sha256 of the canonical body, for replay-or-conflict
	SCBEntryID string    `json:"scb_entry_id"`
	PostedAt   time.Time `json:"posted_at"`
	Entry      scb.Entry `json:"entry"`
	// Tamper marks a line that is not one of our posts but a change of the SCB's own ledger,
	// made through the admin API to simulate a bank that loses, alters, invents or holds back
	// entries (tamper.go). Seq is then the target's, except for invent (a new entry).
	Tamper string `json:"tamper,omitempty"`
	// Status pins the entry's status (tamper hold): it stays there whatever its age.
	Status string `json:"status,omitempty"`
}

// slot is a record in memory. done is closed once the record is durable (err nil) or its write
// failed (err set); readers only see committed slots.
type slot struct {
	rec       record
	done      chan struct{}
	err       error
	committed bool
}

// store is the durable idempotency store: a map from key to entry, backed by an append-only log
// that a single committer goroutine writes and fsyncs in groups.
type store struct {
	id   string
	dir  string
	f    *os.File
	lock io.Closer

	mu          sync.Mutex
	byKey       map[string]*slot
	byRef       map[string][]string // reference_id -> keys (committed only)
	order       []*slot             // committed, in seq order
	postsPerKey map[string]int      // lines per key in the log
	nextSeq     int64
	queue       []*slot
	failed      error // a write or fsync failed: the log's state is unknown, refuse everything
	closed      bool

	wake chan struct{} // 1-buffered: there is work in queue
	stop chan struct{}
	done chan struct{} // the committer has exited
}

// openStore loads (or creates) the log in dir for SCB id and starts the committer.
func openStore(dir, id string) (*store, error) {
	// Parents are created searchable (0755): the simulator's default dir is under ./.dualledger,
	// which the embedded PostgreSQL (run as the postgres user when we are root) must traverse.
	// The data dir itself stays private.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &store{id: id, dir: dir, lock: lock, byKey: map[string]*slot{}, byRef: map[string][]string{},
		postsPerKey: map[string]int{}, nextSeq: 1,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if err := s.checkOwner(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := s.load(); err != nil {
		lock.Close()
		return nil, err
	}
	go s.commitLoop()
	return s, nil
}

// checkOwner keeps two SCBs from sharing one directory (a demo with SCB-1 and SCB-2 pointed at
// the same --data-dir would otherwise mix their ledgers).
func (s *store) checkOwner() error {
	path := filepath.Join(s.dir, "scb.json")
	var meta struct {
		ID string `json:"id"`
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		meta.ID = s.id
		b, _ := json.Marshal(meta)
		if err := writeFileSync(path, b); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		return syncDir(s.dir)
	case err != nil:
		return fmt.Errorf("data dir: %w", err)
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		return fmt.Errorf("data dir: %s: %w", path, err)
	}
	if meta.ID != s.id {
		return fmt.Errorf("data dir %s belongs to SCB %q, not %q", s.dir, meta.ID, s.id)
	}
	return nil
}

// load reads the log into memory. A last line without its newline is a write that was cut by
// a crash; it was never acknowledged (the answer waits for the fsync), so it is cut off. Any
// other unreadable line is corruption, and the simulator refuses to start rather than forget.
func (s *store) load() error {
	path := filepath.Join(s.dir, logName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	r := bufio.NewReaderSize(f, 1<<20)
	var good int64
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			if len(line) > 0 {
				if terr := f.Truncate(good); terr != nil {
					f.Close()
					return fmt.Errorf("cut torn last line of %s: %w", path, terr)
				}
			}
			break
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("read %s: %w", path, err)
		}
		var rec record
		if err := json.Unmarshal(bytes.TrimSpace(line), &rec); err != nil || rec.Key == "" || rec.Seq < 1 {
			f.Close()
			return fmt.Errorf("%s line %d is corrupt; refusing to start (move the file aside only if you mean to forget what it holds)", path, n)
		}
		good += int64(len(line))
		if rec.Tamper != "" && rec.Tamper != tamperInvent {
			s.applyTamper(rec)
			continue
		}
		s.apply(rec)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("seek %s: %w", path, err)
	}
	if err := syncDir(s.dir); err != nil { // the log's directory entry, if we just created it
		f.Close()
		return err
	}
	s.f = f
	return nil
}

// apply adds a record read from the log. A second line for a key counts as a post (that is what
// duplicate_posts reports) but the first one stays the entry, as the first answer was given for it.
func (s *store) apply(rec record) {
	if rec.Tamper == "" { // an invented entry is not one of our posts
		s.postsPerKey[rec.Key]++
	}
	if rec.Seq >= s.nextSeq {
		s.nextSeq = rec.Seq + 1
	}
	if _, ok := s.byKey[rec.Key]; ok {
		return
	}
	sl := &slot{rec: rec, done: make(chan struct{}), committed: true}
	close(sl.done)
	s.byKey[rec.Key] = sl
	s.byRef[rec.Entry.ReferenceID] = append(s.byRef[rec.Entry.ReferenceID], rec.Key)
	s.order = append(s.order, sl)
}

// errClosed is returned once the store is shutting down.
var errClosed = errors.New("the simulator is shutting down")

// post returns the durable record under key, posting e first if the key is new (created true).
// A concurrent post of the same key waits for the first one's fsync and gets its record.
func (s *store) post(key, hash string, e scb.Entry, now time.Time) (rec record, created bool, err error) {
	s.mu.Lock()
	if s.failed != nil {
		s.mu.Unlock()
		return record{}, false, s.failed
	}
	sl, ok := s.byKey[key]
	if !ok {
		if s.closed {
			s.mu.Unlock()
			return record{}, false, errClosed
		}
		seq := s.nextSeq
		s.nextSeq++
		sl = &slot{done: make(chan struct{}), rec: record{Seq: seq, Key: key, Hash: hash,
			SCBEntryID: fmt.Sprintf("%s-%08d", s.id, seq), PostedAt: now.UTC(), Entry: e}}
		s.byKey[key] = sl
		s.queue = append(s.queue, sl)
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	<-sl.done
	if sl.err != nil {
		return record{}, false, sl.err
	}
	return sl.rec, !ok, nil
}

// commitLoop writes queued records in groups: everything queued while the previous fsync ran
// goes out in one write and one fsync, so N concurrent posts cost about one fsync, not N.
func (s *store) commitLoop() {
	defer close(s.done)
	var buf bytes.Buffer
	for {
		select {
		case <-s.wake:
		case <-s.stop:
			s.flush(&buf) // anything enqueued before closed was set
			return
		}
		s.flush(&buf)
	}
}

func (s *store) flush(buf *bytes.Buffer) {
	s.mu.Lock()
	batch := s.queue
	s.queue = nil
	s.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	buf.Reset()
	enc := json.NewEncoder(buf) // Encode appends the newline that ends each line
	var err error
	for _, sl := range batch {
		if err = enc.Encode(sl.rec); err != nil {
			break
		}
	}
	if err == nil {
		_, err = s.f.Write(buf.Bytes())
	}
	if err == nil {
		err = s.f.Sync()
	}
	s.mu.Lock()
	if err != nil {
		// After a failed write or fsync we cannot tell what reached the disk (PostgreSQL's
		// lesson): stop answering rather than risk acknowledging a lost entry or posting twice.
		s.failed = fmt.Errorf("write %s: %w (the simulator must be restarted)", logName, err)
	}
	for _, sl := range batch {
		if err != nil {
			sl.err = s.failed
			continue
		}
		if sl.rec.Tamper != "" && sl.rec.Tamper != tamperInvent {
			s.applyTamper(sl.rec)
			continue
		}
		sl.committed = true
		s.order = append(s.order, sl)
		if sl.rec.Tamper == "" {
			s.postsPerKey[sl.rec.Key]++
		}
		s.byRef[sl.rec.Entry.ReferenceID] = append(s.byRef[sl.rec.Entry.ReferenceID], sl.rec.Key)
	}
	s.mu.Unlock()
	for _, sl := range batch {
		close(sl.done)
	}
}

// get returns the committed record under key.
func (s *store) get(key string) (record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl, ok := s.byKey[key]
	if !ok || !sl.committed {
		return record{}, false
	}
	return sl.rec, true
}

// byReference returns the committed records with reference_id ref (one per ledger).
func (s *store) byReference(ref string) []record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []record
	for _, k := range s.byRef[ref] {
		out = append(out, s.byKey[k].rec)
	}
	return out
}

// page returns up to limit committed records with seq > since, and whether more follow.
func (s *store) page(since int64, limit int) ([]record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.order), func(i int) bool { return s.order[i].rec.Seq > since })
	end := min(i+limit, len(s.order))
	out := make([]record, 0, end-i)
	for _, sl := range s.order[i:end] {
		out = append(out, sl.rec)
	}
	return out, end < len(s.order)
}

// counts returns the durable counters: distinct keys, lines (posts), keys with more than one
// line, and a copy of the per-key counts if perKey.
func (s *store) counts(perKey bool) (keys, posts, dups int, per map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if perKey {
		per = make(map[string]int, len(s.postsPerKey))
	}
	for k, n := range s.postsPerKey {
		posts += n
		if n > 1 {
			dups++
		}
		if perKey {
			per[k] = n
		}
	}
	return len(s.postsPerKey), posts, dups, per
}

// close stops taking posts, writes what is queued, and releases the files.
func (s *store) close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	err := s.f.Close()
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync data dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync data dir: %w", err)
	}
	return nil
}
