package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/semaphore"

	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/schemas"
)

// Deps are what the ingester is given rather than builds.
type Deps struct {
	// Logger receives the ingester's logs; nil uses slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Schemas validates payloads; nil loads Config.SchemasDir (or the
	// built-in schemas when it is empty).
	Schemas *schemas.Registry
}

// Ingester consumes the events topic into ClickHouse. Create it with New and
// run it with Run, once.
type Ingester struct {
	cfg       Config
	log       *slog.Logger
	m         *metrics
	schemas   *schemas.Registry
	conn      driver.Conn
	dialer    *kafka.Dialer
	transport *kafka.Transport
	dlq       *kafka.Writer
	recent    *recentIDs
	// decodeSlots bounds how many fetchers decode at once to the number of
	// cores (GOMAXPROCS). Go shares the cores fairly among runnable
	// goroutines: with one fetcher decoding per partition, the storer, whose
	// INSERTs bound the rate, got a fifth of the CPU on two cores and
	// encoded its columns at that pace while ClickHouse waited. Bounded, it
	// gets a third: 61k-65k events/s instead of 52k-55k on the benchmark.
	// One slot on two cores starved the decoding instead (50k-59k).
	decodeSlots chan struct{}
	// queued holds Config.QueueBytes: a fetcher acquires a record's bytes
	// before it queues the record, the batcher releases them when it takes
	// it.
	queued *semaphore.Weighted
	// block is reused by every insert; only the batcher's goroutine
	// stores.
	block store.EventBlock
}

// New validates cfg, loads the schemas and connects to ClickHouse, so that a
// bad configuration fails before anything is consumed. Kafka is reached in
// Run.
func New(ctx context.Context, cfg Config, deps Deps) (*Ingester, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	in := &Ingester{cfg: cfg, log: deps.Logger, schemas: deps.Schemas, recent: newRecentIDs(cfg.RecentIDs),
		decodeSlots: make(chan struct{}, runtime.GOMAXPROCS(0)), queued: semaphore.NewWeighted(int64(cfg.QueueBytes))}
	if in.log == nil {
		in.log = slog.Default()
	}
	in.log = in.log.With("topic", cfg.Kafka.Topic, "group", cfg.Group)
	if in.schemas == nil {
		if cfg.SchemasDir == "" {
			in.schemas = schemas.Embedded()
		} else {
			reg, err := schemas.Load(cfg.SchemasDir)
			if err != nil {
				return nil, fmt.Errorf("--schemas-dir: %w", err)
			}
			in.schemas = reg
		}
	}
	var err error
	if in.dialer, err = cfg.Kafka.Dialer(); err != nil {
		return nil, err
	}
	if in.transport, err = cfg.Kafka.Transport(); err != nil {
		return nil, err
	}
	if in.conn, err = store.Open(ctx, cfg.ClickHouse); err != nil {
		return nil, err
	}
	in.dlq = &kafka.Writer{
		Addr:         kafka.TCP(cfg.Kafka.Brokers...),
		Topic:        cfg.dlqTopic(),
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 10 * time.Millisecond,
		// Under the broker's default message.max.bytes (1,048,588 bytes
		// of record batch, framing included); kafka-go counts a little
		// less than the batch it sends. Each message fits: see fitDLQ.
		BatchBytes: 1_000_000,
		Transport:  in.transport,
	}
	in.m = newMetrics(deps.Registerer)
	return in, nil
}

// genEnd tells the batcher that a consumer group generation ended; the
// batcher drops what it buffered of it and closes ack.
type genEnd struct {
	epoch int64
	ack   chan struct{}
}

// Run consumes until ctx is cancelled, then stores and commits the batch in
// hand (within Config.ShutdownTimeout), leaves the group and returns nil. It
// returns an error only when it could not finish cleanly; what was not
// committed is read again by the next ingester.
func (in *Ingester) Run(ctx context.Context) error {
	defer in.close()
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:               in.cfg.Group,
		Brokers:          in.cfg.Kafka.Brokers,
		Dialer:           in.dialer,
		Topics:           []string{in.cfg.Kafka.Topic},
		SessionTimeout:   in.cfg.SessionTimeout,
		RebalanceTimeout: in.cfg.RebalanceTimeout,
		// See Config.StoreTimeout.
		HeartbeatInterval: in.cfg.heartbeatInterval(),
		// A new group reads the topic from the start: nothing that reached
		// Kafka before the first ingester ran may be skipped.
		StartOffset: kafka.FirstOffset,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			in.log.Warn("kafka consumer group: " + fmt.Sprintf(msg, args...))
		}),
	})
	if err != nil {
		return fmt.Errorf("kafka consumer group %s: %w", in.cfg.Group, err)
	}

	queue := make(chan *record, in.cfg.QueueMessages)
	ends := make(chan genEnd)
	b := newBatcher(in, queue, ends)
	batchErr := make(chan error, 1)
	batcherDone := make(chan struct{})
	go func() {
		defer close(batcherDone)
		batchErr <- b.run(ctx)
	}()

	var epoch int64
	for {
		gen, err := cg.Next(ctx)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			in.log.Warn("joining consumer group failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		epoch++
		in.startGeneration(ctx, gen, epoch, queue, ends, batcherDone)
	}
	// The batcher stores and commits the batch in hand with the current
	// generation before the group is left, which ends that generation.
	<-batcherDone
	err = <-batchErr
	if cerr := cg.Close(); cerr != nil {
		in.log.Warn("leaving consumer group", "err", cerr)
	}
	return err
}

func (in *Ingester) close() {
	if err := in.dlq.Close(); err != nil {
		in.log.Warn("closing DLQ writer", "err", err)
	}
	in.transport.CloseIdleConnections()
	if err := in.conn.Close(); err != nil {
		in.log.Warn("closing ClickHouse connection", "err", err)
	}
}

// startGeneration starts one fetcher per assigned partition, and a watcher
// that tells the batcher when the generation ends.
func (in *Ingester) startGeneration(ctx context.Context, gen *kafka.Generation, epoch int64, queue chan<- *record, ends chan<- genEnd, batcherDone <-chan struct{}) {
	assigned := gen.Assignments[in.cfg.Kafka.Topic]
	parts := make([]string, 0, len(assigned))
	for _, a := range assigned {
		parts = append(parts, fmt.Sprintf("%d@%d", a.ID, a.Offset))
	}
	in.log.Info("consumer group generation started", "generation", gen.ID, "member", gen.MemberID, "partitions", strings.Join(parts, ","))
	for _, a := range assigned {
		gen.Start(func(gctx context.Context) {
			in.fetch(ctx, gctx, gen, epoch, a.ID, a.Offset, queue)
		})
	}
	gen.Start(func(gctx context.Context) {
		<-gctx.Done()
		// The next generation must not start before the batcher has
		// dropped this one's messages, or they could be committed with it.
		e := genEnd{epoch: epoch, ack: make(chan struct{})}
		select {
		case ends <- e:
			select {
			case <-e.ack:
			case <-batcherDone:
			}
		case <-batcherDone:
		}
		in.log.Info("consumer group generation ended", "generation", gen.ID)
	})
}

// readAhead is how many messages each partition's reader holds ahead of
// its fetcher.
const readAhead = 16

// fetch reads one partition from offset, decodes each message and queues
// it, until the generation ends. It never returns before that: returning
// would end the generation for every partition.
func (in *Ingester) fetch(ctx, gctx context.Context, gen *kafka.Generation, epoch int64, partition int, offset int64, queue chan<- *record) {
	defer func() { <-gctx.Done() }()
	topic := in.cfg.Kafka.Topic
	log := in.log.With("partition", partition)
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   in.cfg.Kafka.Brokers,
		Topic:     topic,
		Partition: partition,
		Dialer:    in.dialer,
		MinBytes:  1,
		// A message larger than a fetch can never be read; the broker's
		// limit is 1 MB by default.
		MaxBytes: max(2<<20, 2*in.cfg.MaxMessageBytes),
		MaxWait:  250 * time.Millisecond,
		// The reader's read-ahead, which Config.QueueBytes does not see:
		// kafka-go's default of 100 is 100 MiB of 1 MiB messages.
		QueueCapacity: readAhead,
		// Lag is computed from each fetched message instead.
		ReadLagInterval: -1,
	})
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		log.Error("setting fetch offset", "offset", offset, "err", err)
		return
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(gctx, cancel)
	defer stop()

	lag := in.m.lag.WithLabelValues(topic, strconv.Itoa(partition))
	// A partition that moves to another member is its lag to report.
	defer in.m.lag.DeleteLabelValues(topic, strconv.Itoa(partition))
	for {
		m, err := r.FetchMessage(fctx)
		if err != nil {
			if fctx.Err() != nil {
				return
			}
			log.Warn("fetching from Kafka failed; retrying", "err", err)
			select {
			case <-fctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		in.m.consumed.Inc()
		lag.Set(float64(max(0, m.HighWaterMark-m.Offset-1)))
		rec := &record{epoch: epoch, gen: gen, msg: m}
		in.decodeSlots <- struct{}{}
		in.decode(rec)
		<-in.decodeSlots
		// A message bigger than the whole budget waits for the queue to
		// empty, then takes all of it.
		rec.queued = min(int64(rec.size()), int64(in.cfg.QueueBytes))
		if err := in.queued.Acquire(fctx, rec.queued); err != nil {
			return
		}
		select {
		case queue <- rec:
		case <-fctx.Done():
			in.queued.Release(rec.queued)
			return
		}
	}
}

// batcher collects records into batches and hands them to the storer
// goroutine. Batches are stored one at a time and in order, so a batch's
// offsets are never committed before those of the batch before it; but the
// work around the store overlaps it: while batch N is being stored, batch
// N+1 is collected (the fetchers decode) and, once complete, its stored-id
// lookup already runs. The batcher runs in one goroutine; every field is
// its own.
type batcher struct {
	in    *Ingester
	queue <-chan *record
	ends  <-chan genEnd

	buf   []*record
	bytes int
	// due is set when the batch in buf has waited Config.BatchInterval.
	due   bool
	timer *time.Timer
	// lastEnded is the newest generation that ended: its records, and
	// older ones, are never stored or committed any more.
	lastEnded int64

	// inflight is the batch the storer is working on, nil when it is idle;
	// next is the complete batch that waits for it, its lookup under way.
	// While next waits, nothing more is read: at most two batches and the
	// queue are held. failed is a batch whose store gave up because of the
	// shutdown: shutdown stores it first.
	inflight, next, failed *flight
	// lookupCtx bounds the lookups started ahead to the batcher's life.
	lookupCtx context.Context
	// spare is the slice of the last stored batch, reused for the next.
	spare []*record
	work  chan *flight
	done  chan *flight
}

// flight is one batch handed to the storer.
type flight struct {
	recs []*record
	// lookup finds which of the batch's ids are stored already; it starts
	// when the batch is complete.
	lookup *lookup
	// abort is closed when the batch's generation ends: the storer stops
	// retrying and returns errGenerationEnded.
	abort chan struct{}
	err   error
	// left is set when the store failed after the rows were stored: the
	// DLQ write and the commit are left.
	left *undelivered
}

// errGenerationEnded aborts storing a batch whose generation ended.
var errGenerationEnded = errors.New("consumer group generation ended")

func newBatcher(in *Ingester, queue <-chan *record, ends <-chan genEnd) *batcher {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	return &batcher{in: in, queue: queue, ends: ends, lastEnded: -1, timer: timer,
		work: make(chan *flight), done: make(chan *flight)}
}

func (b *batcher) run(ctx context.Context) error {
	var cancelLookups context.CancelFunc
	b.lookupCtx, cancelLookups = context.WithCancel(context.WithoutCancel(ctx))
	defer cancelLookups()
	storerDone := make(chan struct{})
	defer func() { <-storerDone }()
	defer close(b.work)
	go func() {
		defer close(storerDone)
		for f := range b.work {
			f.left, f.err = b.in.storeAndCommit(ctx, f.recs, f.lookup, f.abort)
			b.done <- f
		}
	}()

	for {
		// A complete batch waiting for the storer stops the reading, and
		// with it, once the queue is full, the fetchers.
		queue := b.queue
		if b.full() || b.next != nil {
			queue = nil
		}
		var fire <-chan time.Time
		if len(b.buf) > 0 && !b.due {
			fire = b.timer.C
		}
		select {
		case <-ctx.Done():
			return b.shutdown()
		case e := <-b.ends:
			b.endGeneration(e)
		case f := <-b.done:
			b.stored(f)
		case r := <-queue:
			b.in.queued.Release(r.queued)
			if r.epoch <= b.lastEnded {
				b.in.m.revokedDropped.Inc()
				continue
			}
			if len(b.buf) == 0 {
				b.timer.Reset(b.in.cfg.BatchInterval)
			}
			b.buf = append(b.buf, r)
			b.bytes += r.size()
		case <-fire:
			b.due = true
		}
		// Once the shutdown began nothing more is stored here: a batch
		// stored after one that gave up would commit offsets past it.
		if ctx.Err() == nil {
			b.dispatch()
		}
	}
}

func (b *batcher) full() bool {
	return len(b.buf) >= b.in.cfg.BatchRows || b.bytes >= b.in.cfg.BatchBytes
}

// dispatch moves batches along: next to the idle storer, and the batch in
// buf, once complete, to the storer or to next.
func (b *batcher) dispatch() {
	if b.inflight == nil && b.next != nil {
		b.inflight, b.next = b.next, nil
		b.work <- b.inflight
	}
	if b.next != nil || len(b.buf) == 0 || !b.due && !b.full() {
		return
	}
	b.timer.Stop()
	f := &flight{recs: b.buf, lookup: b.in.startLookup(b.lookupCtx, b.buf), abort: make(chan struct{})}
	b.buf, b.spare = b.spare[:0], nil
	b.bytes, b.due = 0, false
	if b.inflight == nil {
		b.inflight = f
		b.work <- f
	} else {
		b.next = f
	}
}

// stored takes back a batch from the storer.
func (b *batcher) stored(f *flight) {
	b.inflight = nil
	switch {
	case f.err == nil:
		clear(f.recs)
		b.spare = f.recs[:0]
	case errors.Is(f.err, errGenerationEnded):
		// endGeneration counted and logged the drop.
	default:
		// Only a shutdown makes the storer give up otherwise: shutdown
		// stores the batch, with next and buf behind it.
		b.failed = f
	}
}

// endGeneration drops the records of an ended generation, buffered, waiting
// or being stored: the coordinator would refuse their commit, and the
// partitions' owners in the next generation read them again from the
// committed offsets. It acknowledges the end only once the storer let go of
// them.
func (b *batcher) endGeneration(e genEnd) {
	dropped := func(recs []*record) {
		b.in.log.Info("dropping the batch of an ended consumer group generation; its messages will be read again",
			"messages", len(recs), "offsets", offsetRanges(recs))
		b.in.m.revokedDropped.Add(float64(len(recs)))
	}
	if f := b.inflight; f != nil && f.recs[0].epoch <= e.epoch {
		// The attempt under way finishes (see storeAndCommit); retries stop.
		close(f.abort)
		b.stored(<-b.done)
		switch {
		case f.left != nil:
			b.in.log.Info("a consumer group generation ended before a stored batch's DLQ write and commit; the partitions' new owners read its messages again, find them stored and write its rejects again",
				"messages", len(f.recs), "offsets", offsetRanges(f.recs))
		case f.err != nil:
			dropped(f.recs)
		}
	}
	if f := b.failed; f != nil && f.recs[0].epoch <= e.epoch {
		b.failed = nil
	}
	if f := b.next; f != nil && f.recs[0].epoch <= e.epoch {
		b.next = nil
		dropped(f.recs)
	}
	if len(b.buf) > 0 && b.buf[0].epoch <= e.epoch {
		dropped(b.buf)
		clear(b.buf)
		b.buf = b.buf[:0]
		b.bytes, b.due = 0, false
		b.timer.Stop()
	}
	b.lastEnded = max(b.lastEnded, e.epoch)
	close(e.ack)
}

// shutdown stores and commits what was fetched before the shutdown: the
// batch being stored, if its store gave up, the one waiting, and what is
// buffered, in this order.
func (b *batcher) shutdown() error {
	if b.inflight != nil {
		b.stored(<-b.done)
	}
	// A failed batch whose rows are stored only needs delivering, first.
	var failedLeft *undelivered
	var first []*record
	if b.failed != nil {
		if failedLeft = b.failed.left; failedLeft == nil {
			first = append(first, b.failed.recs...)
		}
	}
	if b.next != nil {
		first = append(first, b.next.recs...)
	}
	b.buf = append(first, b.buf...)
	b.failed, b.next = nil, nil
	// What was fetched before the shutdown is bounded by the queue: store it
	// with the batch rather than read it again later.
drain:
	for {
		select {
		case r := <-b.queue:
			b.in.queued.Release(r.queued)
			if r.epoch > b.lastEnded {
				b.buf = append(b.buf, r)
				b.bytes += r.size()
			}
		default:
			break drain
		}
	}
	if len(b.buf) == 0 && failedLeft == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.in.cfg.ShutdownTimeout)
	defer cancel()
	// A generation that ends meanwhile aborts the store; its end is
	// acknowledged once the store returned.
	abort := make(chan struct{})
	ended := make(chan *genEnd, 1)
	stop := make(chan struct{})
	go func() {
		select {
		case e := <-b.ends:
			close(abort)
			ended <- &e
		case <-stop:
			ended <- nil
		}
	}()
	err := func() error {
		if failedLeft != nil {
			if err := b.in.deliver(ctx, failedLeft, abort); err != nil {
				return fmt.Errorf("delivering the stored batch at offsets %s: %w", offsetRanges(failedLeft.recs), err)
			}
		}
		if len(b.buf) == 0 {
			return nil
		}
		_, err := b.in.storeAndCommit(ctx, b.buf, nil, abort)
		return err
	}()
	close(stop)
	if e := <-ended; e != nil {
		close(e.ack)
	}
	switch {
	case errors.Is(err, errGenerationEnded):
		b.in.log.Info("the group rebalanced during shutdown; the last batch is left to the partitions' new owners",
			"messages", len(b.buf), "offsets", offsetRanges(b.buf))
	case err != nil:
		return fmt.Errorf("storing the last batch at shutdown (%d messages, offsets %s; they will be read again): %w", len(b.buf), offsetRanges(b.buf), err)
	case len(b.buf) == 0:
		b.in.log.Info("last batch delivered and committed")
	default:
		b.in.log.Info("last batch stored and committed", "messages", len(b.buf), "offsets", offsetRanges(b.buf))
	}
	return nil
}

// outcome is what storing a batch decided for each record.
type outcome struct {
	insert     []*record
	quarantine []*record
	dups       map[string]int
}

// classify applies the dedup layers that need no I/O. An id the window of
// recently stored ids knows is settled now: the stored content wins. The
// batch's first delivery of any other id is a candidate, to be looked up
// among the stored ids; its later deliveries in the batch wait in later,
// for settle, since which content won is known only after the lookup.
func (in *Ingester) classify(recs []*record) (candidates, later []*record, o outcome) {
	o.dups = map[string]int{}
	type decision struct {
		stored    uint64 // the stored content's hash, when the window knows the id
		candidate bool
	}
	seen := make(map[uuid.UUID]decision, len(recs))
	for _, r := range recs {
		// A batch stored again (at shutdown, after its first store gave
		// up) is decided afresh: what is stored may have changed.
		if r.class == classConflict {
			r.class, r.reason = "", ""
		}
		if r.rejected() {
			o.quarantine = append(o.quarantine, r)
			continue
		}
		id := r.ev.ID
		d, ok := seen[id]
		if !ok {
			h, known := in.recent.get(id)
			d = decision{stored: h, candidate: !known}
			seen[id] = d
			if d.candidate {
				candidates = append(candidates, r)
				continue
			}
		}
		switch {
		case d.candidate:
			later = append(later, r)
		case d.stored == r.hash:
			o.dups[layerRecent]++
		default:
			r.reject(classConflict, conflictReason(id, "already stored"))
			o.quarantine = append(o.quarantine, r)
		}
	}
	return candidates, later, o
}

// settled is what the ids found stored decide for a batch's candidates and
// their later deliveries.
type settled struct {
	insert, conflicts     []*record
	storedDups, batchDups int
}

// settle decides the candidates and their later deliveries given the
// content hashes found stored: the stored content wins, or else the
// batch's first delivery. It only reads stored, so that a retry can settle
// again.
func settle(candidates, later []*record, stored map[uuid.UUID]uint64) settled {
	var s settled
	var first map[uuid.UUID]uint64 // the hash of the first delivery of ids not stored
	if len(later) > 0 {
		first = make(map[uuid.UUID]uint64, len(candidates))
	}
	for _, r := range candidates {
		r.class, r.reason = "", ""
		h, ok := stored[r.ev.ID]
		switch {
		case !ok:
			if first != nil {
				first[r.ev.ID] = r.hash
			}
			s.insert = append(s.insert, r)
		case h == r.hash:
			s.storedDups++
		default:
			r.class, r.reason = classConflict, conflictReason(r.ev.ID, "already stored")
			s.conflicts = append(s.conflicts, r)
		}
	}
	for _, r := range later {
		r.class, r.reason = "", ""
		if h, ok := stored[r.ev.ID]; ok {
			if h == r.hash {
				s.storedDups++
			} else {
				r.class, r.reason = classConflict, conflictReason(r.ev.ID, "already stored")
				s.conflicts = append(s.conflicts, r)
			}
			continue
		}
		if first[r.ev.ID] == r.hash {
			s.batchDups++
		} else {
			r.class, r.reason = classConflict, conflictReason(r.ev.ID, "already delivered earlier in this batch")
			s.conflicts = append(s.conflicts, r)
		}
	}
	return s
}

func conflictReason(id uuid.UUID, where string) string {
	return fmt.Sprintf("conflict: event %s %s with different content (first wins; this delivery is kept in quarantine)", id, where)
}

// storeAndCommit stores a batch (events, quarantine rows, DLQ messages),
// retrying failures with capped exponential backoff, and then commits its
// offsets with the generation it was read in. It gives up when ctx is done
// or abort is closed (the generation ended). Only the storer goroutine, and
// the batcher's shutdown once the storer is idle, call it.
//
// When it fails after the rows were stored (writing to the DLQ, or the
// generation ended meanwhile), left is what remains: deliver finishes it,
// and storing the batch again would count and quarantine it twice.
func (in *Ingester) storeAndCommit(ctx context.Context, recs []*record, early *lookup, abort <-chan struct{}) (left *undelivered, err error) {
	if aborted(abort) {
		return nil, errGenerationEnded
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	candidates, later, o := in.classify(recs)
	baseQuarantine := len(o.quarantine)
	ids := make([]uuid.UUID, len(candidates))
	for i, r := range candidates {
		ids[i] = r.ev.ID
	}
	log := in.log.With("offsets", offsetRanges(recs))
	wait := in.retrier(ctx, abort, log)

	var settledAs settled
	var lookupTime, insertTime time.Duration
	var found map[uuid.UUID]uint64
	for {
		o.quarantine = o.quarantine[:baseQuarantine]
		err := func() error {
			// An attempt under way is not cut short by a shutdown: an insert
			// aborted midway leaves the client unsure whether the server
			// stored it. ctx only stops further attempts.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.StoreTimeout)
			defer cancel()
			actx = store.InsertContext(actx)
			lookupStart := time.Now()
			stored, err := early.result()
			early = nil
			if err != nil || stored == nil {
				if stored, err = in.storedHashes(actx, ids); err != nil {
					return err
				}
			}
			lookupTime = time.Since(lookupStart)
			found = stored
			settledAs = settle(candidates, later, stored)
			o.insert = settledAs.insert
			o.quarantine = append(o.quarantine, settledAs.conflicts...)
			start := time.Now()
			if err := in.insertEvents(actx, o.insert); err != nil {
				return err
			}
			insertTime = time.Since(start)
			in.m.insertLatency.Observe(insertTime.Seconds())
			return in.insertQuarantine(actx, o.quarantine)
		}()
		if err == nil {
			break
		}
		if werr := wait(err); werr != nil {
			return nil, werr
		}
	}
	// The rows are acknowledged: remember them before anything else can
	// fail, so a retry of the DLQ below does not ask ClickHouse again.
	for _, r := range o.insert {
		in.recent.add(r.ev.ID, r.hash)
	}
	// So are the ids found stored already: the next batch's lookup may have
	// run before they were (an insert whose acknowledgement was lost and
	// that this batch's retry found stored), and the window covers that.
	for _, r := range candidates {
		if h, ok := found[r.ev.ID]; ok {
			in.recent.add(r.ev.ID, h)
		}
	}
	// Counted now that they are stored, whatever happens to the DLQ write
	// and the commit.
	in.m.batchSize.Observe(float64(len(recs)))
	in.m.inserted.Add(float64(len(o.insert)))
	o.dups[layerStored] += settledAs.storedDups
	o.dups[layerBatch] += settledAs.batchDups
	for layer, n := range o.dups {
		in.m.duplicates.WithLabelValues(layer).Add(float64(n))
	}
	for _, r := range o.insert {
		if !r.validated {
			in.m.unvalidated.Inc()
		}
	}
	for _, r := range o.quarantine {
		in.m.quarantined.WithLabelValues(r.class).Inc()
		if r.class == classConflict {
			in.m.conflicts.Inc()
		}
		log.Warn("message quarantined", "partition", r.msg.Partition, "offset", r.msg.Offset, "reason", r.reason)
	}

	u := &undelivered{recs: recs, quarantine: o.quarantine, log: log}
	if err := in.deliver(ctx, u, abort); err != nil {
		return u, err
	}
	log.Debug("batch stored and committed", "messages", len(recs), "inserted", len(o.insert), "quarantined", len(o.quarantine),
		"lookup", lookupTime, "insert", insertTime)
	return nil, nil
}

// undelivered is a batch whose rows are stored and counted, with its DLQ
// write and offset commit left to do.
type undelivered struct {
	recs, quarantine []*record
	log              *slog.Logger
}

// deliver writes a stored batch's rejected messages to the DLQ, retrying,
// and commits its offsets. Once the batch's generation ended it stops: a
// new owner of the partitions reads the messages again and does both (the
// coordinator would refuse the commit); not starting another attempt lets
// this member rejoin in time (Config.StoreTimeout).
func (in *Ingester) deliver(ctx context.Context, u *undelivered, abort <-chan struct{}) error {
	wait := in.retrier(ctx, abort, u.log)
	for len(u.quarantine) > 0 {
		if aborted(abort) {
			return errGenerationEnded
		}
		err := in.produceDLQ(ctx, u.quarantine)
		if err == nil {
			break
		}
		if werr := wait(err); werr != nil {
			return werr
		}
	}
	if aborted(abort) {
		return errGenerationEnded
	}
	if err := in.commit(u.recs); err != nil {
		in.m.commitFailures.Inc()
		u.log.Warn("committing offsets failed; the batch is stored and its messages will be read again and deduplicated", "err", err)
	}
	return nil
}

// aborted reports whether abort is closed: the batch's generation ended.
func aborted(abort <-chan struct{}) bool {
	select {
	case <-abort:
		return true
	default:
		return false
	}
}

// retrier returns the wait between attempts of one batch: capped
// exponential backoff, counted and logged. The wait returns an error, and
// the batch's attempts end, when ctx is done or abort is closed.
func (in *Ingester) retrier(ctx context.Context, abort <-chan struct{}, log *slog.Logger) func(error) error {
	backoff := in.cfg.RetryMin
	return func(err error) error {
		in.m.storeFailures.Inc()
		log.Warn("storing batch failed; retrying", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(2*backoff, in.cfg.RetryMax)
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-abort:
			return errGenerationEnded
		}
	}
}

// commit commits the offset after the last record of each partition, with
// the generation the records were read in: the coordinator refuses it if
// the group has moved on, so a lost partition is never committed.
func (in *Ingester) commit(recs []*record) error {
	next := map[int]int64{}
	for _, r := range recs {
		next[r.msg.Partition] = max(next[r.msg.Partition], r.msg.Offset+1)
	}
	return recs[0].gen.CommitOffsets(map[string]map[int]int64{in.cfg.Kafka.Topic: next})
}

// produceDLQ writes the rejected messages to the DLQ topic, with the reason
// and where they came from in headers.
func (in *Ingester) produceDLQ(ctx context.Context, recs []*record) error {
	if len(recs) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		m := r.msg
		headers := []kafka.Header{
			{Key: "reason", Value: []byte(r.reason)},
			{Key: "reason-class", Value: []byte(r.class)},
			{Key: "original-topic", Value: []byte(m.Topic)},
			{Key: "original-partition", Value: []byte(strconv.Itoa(m.Partition))},
			{Key: "original-offset", Value: []byte(strconv.FormatInt(m.Offset, 10))},
		}
		if r.eventID() != "" {
			headers = append(headers, kafka.Header{Key: "event-id", Value: []byte(r.eventID())})
		}
		if ct := contentType(m); ct != "" {
			headers = append(headers, kafka.Header{Key: "content-type", Value: []byte(ct)})
		}
		msgs[i] = fitDLQ(kafka.Message{Key: m.Key, Value: m.Value, Headers: headers})
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.StoreTimeout)
	defer cancel()
	if err := in.dlq.WriteMessages(wctx, msgs...); err != nil {
		return fmt.Errorf("producing %d messages to DLQ %s: %w", len(msgs), in.cfg.dlqTopic(), err)
	}
	return nil
}

// dlqMessageBytes bounds a DLQ message, key, value and headers: under the
// DLQ writer's BatchBytes, and so under the broker's default
// message.max.bytes and kafka-go's default fetch size (1 MB), so that the
// DLQ can be written and read with defaults. A rejected message may be far
// bigger: its limit is --max-message-bytes, and producers that compress
// get messages past the broker's limit, which counts compressed bytes.
const dlqMessageBytes = 960 << 10

// dlqFieldBytes bounds the key and each header of a DLQ message that must
// be cut, so that the value keeps most of the room.
const dlqFieldBytes = 4 << 10

// fitDLQ cuts m to dlqMessageBytes and marks it "truncated": a message that
// cannot be produced would stop ingestion, since its batch is retried until
// the DLQ takes it. The quarantine table holds the message whole.
func fitDLQ(m kafka.Message) kafka.Message {
	if dlqSize(m) <= dlqMessageBytes {
		return m
	}
	m.Headers = append(m.Headers, kafka.Header{Key: "truncated", Value: []byte("true")})
	if len(m.Key) > dlqFieldBytes {
		m.Key = m.Key[:dlqFieldBytes]
	}
	for i, h := range m.Headers {
		if len(h.Value) > dlqFieldBytes {
			m.Headers[i].Value = h.Value[:dlqFieldBytes]
		}
	}
	room := dlqMessageBytes - (dlqSize(m) - len(m.Value))
	m.Value = m.Value[:min(len(m.Value), max(room, 0))]
	return m
}

// dlqSize is the size of m as a record, over-counted: 64 bytes of framing
// and 10 per header (varint lengths) more than key, value and headers.
func dlqSize(m kafka.Message) int {
	n := 64 + len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += 10 + len(h.Key) + len(h.Value)
	}
	return n
}

// offsetRanges renders the offsets of recs per partition, "0:10-19,2:5-7",
// for logs.
func offsetRanges(recs []*record) string {
	type span struct{ first, last int64 }
	spans := map[int]*span{}
	for _, r := range recs {
		p, o := r.msg.Partition, r.msg.Offset
		if s, ok := spans[p]; ok {
			s.first, s.last = min(s.first, o), max(s.last, o)
		} else {
			spans[p] = &span{o, o}
		}
	}
	var b strings.Builder
	for i, p := range slices.Sorted(maps.Keys(spans)) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d:%d-%d", p, spans[p].first, spans[p].last)
	}
	return b.String()
}
