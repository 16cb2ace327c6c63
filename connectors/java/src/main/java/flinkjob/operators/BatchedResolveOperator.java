package flinkjob.operators;

import org.apache.flink.api.common.operators.MailboxExecutor;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.java.tuple.Tuple;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.api.java.tuple.Tuple3;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.apache.flink.metrics.Counter;
import org.apache.flink.python.env.embedded.EmbeddedPythonEnvironment;
import org.apache.flink.python.env.embedded.EmbeddedPythonEnvironmentManager;
import org.apache.flink.streaming.api.operators.BoundedOneInput;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.operators.python.embedded.AbstractEmbeddedPythonFunctionOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;
import org.apache.flink.util.OutputTag;

import pemja.core.PythonInterpreter;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;

/**
 * The keyed resolver operator of thread mode: buffers records, then calls Python once per batch.
 *
 * <p>Modelled on PyFlink's {@code EmbeddedPythonKeyedProcessOperator} (same embedded pemja
 * interpreter, set up by {@link AbstractEmbeddedPythonFunctionOperator} from the job's Python
 * configuration), but where that one calls Python once per record, this one buffers up to
 * {@code batchSize} records or {@code batchTimeMs} milliseconds, reads the state of each distinct
 * key of the batch on the JVM, and hands Python one byte buffer per batch. Python
 * ({@code flink_job._batch.BatchStep}) runs the same per-message step as {@code replay} and
 * returns one buffer: the new state of each changed key, feature rows and dead letters. The
 * states are written here and the rows emitted (dead letters on the side output).
 *
 * <p>The batch is flushed before every checkpoint barrier ({@code prepareSnapshotPreBarrier},
 * inherited), at end of input and when the operator finishes, so a checkpoint never holds
 * records that were read but not applied: exactly-once and savepoints are as without batching.
 *
 * <p><b>Python on its own thread</b> ({@code pythonThread}, off by default): the Python call
 * runs on a thread of this operator's own ("flink-job python ..."), with its own pemja
 * interpreter made on that thread from the job's Python configuration, while the task thread
 * goes on taking in the next batch's records and emitting the previous batch's rows into the
 * chained sink. At most one batch is in flight, and the next one is framed only after that
 * one's states are written, so every request carries its keys' current state, exactly as one
 * thread would. A full buffer waits for the batch in flight (backpressure), a batch timer that
 * fires meanwhile hands the buffer over as soon as that batch is answered; a checkpoint
 * barrier, a watermark, end of input and finish wait for it and then flush the rest (a drain),
 * so checkpoints, savepoints and the order of rows and dead letters are unchanged. When the
 * batch in flight is answered the Python thread posts a mail to the task's mailbox, which
 * writes its states and emits its rows at once (not at the next batch). It is for TaskManagers
 * with a core to spare for each keyed subtask; without it, Python runs on the task thread, one
 * batch at a time.
 *
 * <p>State: the key's {@code ListState<byte[]>} named {@code python-state-state} holding one
 * element framed {@code be32(len) payload}: exactly what the per-record operator stores in
 * thread and process mode ({@code flink_job._runtime.StateCell}), so savepoints move freely
 * between the three.
 *
 * <p>Input: {@code Row(stateKey: String, message: Tuple)} keyed by {@code Row(stateKey)}; the
 * message tuple is {@code flink_job._wire.MSG_TYPE} (key, value, partition, offset, headers,
 * absent bits). Only bytes cross into Python: strings (the state key, header names) are encoded
 * on the JVM with {@link #wtf8}, which keeps even a lone surrogate exact (Python decodes with
 * {@code surrogatepass}), so nothing the JVM holds can fail or change in the crossing.
 */
public class BatchedResolveOperator extends AbstractEmbeddedPythonFunctionOperator<Tuple>
        implements OneInputStreamOperator<Row, Tuple>, BoundedOneInput {

    private static final long serialVersionUID = 1L;

    /** The state name: process mode's Java side names a Python state "python-state-NAME". */
    public static final String STATE_NAME = "python-state-state";

    private static final String STALE_PACKAGES =
            "import importlib as _fj_il, importlib.machinery as _fj_ilm, os as _fj_os, sys as _fj_sys\n"
                    + "for _fj_pkg in ('flink_job', 'connectors'):\n"
                    + "    _fj_m = _fj_sys.modules.get(_fj_pkg)\n"
                    + "    if _fj_m is not None and not all(_fj_os.path.isdir(p)"
                    + " for p in getattr(_fj_m, '__path__', ())):\n"
                    + "        _fj_il.invalidate_caches()\n"
                    + "        _fj_spec = _fj_ilm.PathFinder.find_spec(_fj_pkg)\n"
                    + "        if _fj_spec is not None and _fj_spec.submodule_search_locations:\n"
                    + "            _fj_m.__path__[:] = list(_fj_spec.submodule_search_locations)\n";

    /**
     * The request and answer format ({@code flink_job._batch.WIRE_VERSION}): each request starts
     * with {@code MAGIC}, and the Python side's version is checked when the operator opens.
     */
    static final int WIRE_VERSION = 2;

    private static final int MAGIC = 0x464A0000 | WIRE_VERSION;

    /** The Python object holding this operator's BatchStep in the interpreter. */
    private static final String PY_OBJECT = "flink_job_batch_step";

    // Fields of the message tuple (flink_job._wire.MSG_TYPE).
    private static final int MSG_KEY = 0;
    private static final int MSG_VALUE = 1;
    private static final int MSG_PARTITION = 2;
    private static final int MSG_OFFSET = 3;
    private static final int MSG_HEADERS = 4;
    private static final int MSG_ABSENT = 5;
    /** Record timestamp (epoch ms), when the message tuple has it (7 fields). */
    private static final int MSG_TIMESTAMP = 6;

    private static final long NO_TIMESTAMP = -1L;
    private static final int ABSENT_HEADERS = 4;

    private static final byte[] EMPTY = new byte[0];

    private final byte[] spec;
    private final String deadLetterTagId;
    private final TypeInformation<Row> deadLetterType;
    private final int batchSize;
    private final int batchTimeMs;
    /** Fields of a feature row: 2 (key, value) or 3 (key, value, timestamp). */
    private final int rowArity;
    /** Run Python on a thread of its own, overlapping the task thread's work (class doc). */
    private final boolean pythonThread;

    private transient ListState<byte[]> state;
    private transient OutputTag<Row> deadLetters;
    private transient List<Object> keyObjects;
    private transient List<String> keyStrings;
    private transient List<Tuple> messages;
    private transient long[] timestamps;
    private transient boolean[] hasTimestamp;
    private transient DataOutputSerializer out;
    private transient DataInputDeserializer in;
    private transient Counter eventsIn;
    private transient Counter featureRows;
    private transient Counter deadLetterCount;
    private transient Counter skipped;
    private transient Counter lateArrivals;
    private transient Counter batches;
    private transient Counter pythonCpuNanos;
    private transient Counter flushCpuNanos;
    private transient ThreadMXBean threads;
    /** The base's Python environment (kept to make the Python thread's own interpreter). */
    private transient EmbeddedPythonEnvironmentManager environmentManager;
    /** The Python thread (null: Python runs on the task thread, in {@code interpreter}). */
    private transient ExecutorService python;
    /** The Python thread's interpreter: made, used and closed on that thread only. */
    private transient PythonInterpreter pythonInterpreter;
    /** Where the Python thread tells the task thread that a batch is answered. */
    private transient MailboxExecutor mailbox;
    /** The batch whose answer is awaited (task thread only), or null. */
    private transient Batch inFlight;
    /** The batch timer fired while a batch was in flight: flush when it is answered. */
    private transient boolean flushDue;

    /**
     * @param config the job's Python configuration (PyFlink adds the rest before submission)
     * @param spec JSON describing the resolver ({@code flink_job._runtime.ResolverRef})
     * @param deadLetterTagId the side output's tag id ("dead-letters")
     * @param deadLetterType {@code Row(k BYTES, v BYTES, headers MAP<STRING, BYTES>)}
     * @param batchSize records per Python call, at most
     * @param batchTimeMs how long a record waits in the buffer, at most
     * @param rowArity fields of the feature-row tuple: 2 (key, value) or 3 (key, value,
     *     timestamp in epoch ms, -1 for none)
     * @param pythonThread run Python on a thread of its own, overlapping the task thread's work
     */
    public BatchedResolveOperator(
            Configuration config,
            byte[] spec,
            String deadLetterTagId,
            TypeInformation<Row> deadLetterType,
            int batchSize,
            int batchTimeMs,
            int rowArity,
            boolean pythonThread) {
        super(config);
        if (batchSize < 1 || batchTimeMs < 1) {
            throw new IllegalArgumentException(
                    "batch size and batch time must be >= 1, got " + batchSize + ", " + batchTimeMs);
        }
        this.spec = spec;
        this.deadLetterTagId = deadLetterTagId;
        this.deadLetterType = deadLetterType;
        this.batchSize = batchSize;
        this.batchTimeMs = batchTimeMs;
        if (rowArity != 2 && rowArity != 3) {
            throw new IllegalArgumentException("row arity must be 2 or 3, got " + rowArity);
        }
        this.rowArity = rowArity;
        this.pythonThread = pythonThread;
    }

    @Override
    public void open() throws Exception {
        deadLetters = new OutputTag<>(deadLetterTagId, deadLetterType);
        keyObjects = new ArrayList<>();
        keyStrings = new ArrayList<>();
        messages = new ArrayList<>(batchSize);
        timestamps = new long[batchSize];
        hasTimestamp = new boolean[batchSize];
        out = new DataOutputSerializer(64 * 1024);
        in = new DataInputDeserializer();
        threads = ManagementFactory.getThreadMXBean();
        if (pythonThread) {
            mailbox =
                    getContainingTask()
                            .getMailboxExecutorFactory()
                            .createExecutor(getOperatorConfig().getChainIndex());
        }
        // Opens the embedded interpreter, then calls openPythonInterpreter().
        super.open();
        state =
                getRuntimeContext()
                        .getListState(
                                new ListStateDescriptor<>(
                                        STATE_NAME,
                                        PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO));
        eventsIn = getRuntimeContext().getMetricGroup().counter("eventsIn");
        featureRows = getRuntimeContext().getMetricGroup().counter("featureRows");
        deadLetterCount = getRuntimeContext().getMetricGroup().counter("deadLetters");
        skipped = getRuntimeContext().getMetricGroup().counter("skipped");
        lateArrivals = getRuntimeContext().getMetricGroup().counter("lateArrivals");
        // Where the time goes, per batch (two clock reads per batch, not per record).
        batches = getRuntimeContext().getMetricGroup().counter("batches");
        pythonCpuNanos = getRuntimeContext().getMetricGroup().counter("pythonCpuNanos");
        flushCpuNanos = getRuntimeContext().getMetricGroup().counter("flushCpuNanos");
        // Runs in the task thread (mailbox), like processElement: no locking needed.
        getProcessingTimeService()
                .scheduleWithFixedDelay(t -> batchTimer(), batchTimeMs, batchTimeMs);
    }

    @Override
    protected EmbeddedPythonEnvironmentManager createPythonEnvironmentManager() {
        environmentManager = super.createPythonEnvironmentManager();
        return environmentManager;
    }

    @Override
    public void openPythonInterpreter() {
        if (pythonThread && environmentManager == null) {
            // A Flink whose base class no longer makes its environment through the factory.
            LOG.warn(
                    "flink-job batched operator: no Python environment to make the Python "
                    + "thread's interpreter from; Python runs on the task thread");
        }
        if (!pythonThread || environmentManager == null) {
            setUpPython(interpreter);
            return;
        }
        // The base's interpreter (this thread's) stays idle: pemja binds an interpreter to the
        // thread that made it, so the Python thread makes its own, from the same configuration.
        String name =
                "flink-job python: "
                        + getOperatorConfig().getOperatorName()
                        + " ("
                        + (getRuntimeContext().getTaskInfo().getIndexOfThisSubtask() + 1)
                        + "/"
                        + getRuntimeContext().getTaskInfo().getNumberOfParallelSubtasks()
                        + ")";
        python =
                Executors.newSingleThreadExecutor(
                        r -> {
                            Thread t = new Thread(r, name);
                            t.setDaemon(true);
                            return t;
                        });
        CompletableFuture<Void> opened = new CompletableFuture<>();
        python.execute(
                () -> {
                    try {
                        pythonInterpreter =
                                new PythonInterpreter(
                                        ((EmbeddedPythonEnvironment)
                                                        environmentManager.createEnvironment())
                                                .getConfig());
                        setUpPython(pythonInterpreter);
                        opened.complete(null);
                    } catch (Throwable e) {
                        opened.completeExceptionally(e);
                    }
                });
        try {
            opened.get();
            LOG.info("flink-job batched operator: Python runs on its own thread, '{}'", name);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while opening the Python thread", e);
        } catch (ExecutionException e) {
            Exception cause = rethrown(e);
            throw cause instanceof RuntimeException
                    ? (RuntimeException) cause
                    : new IllegalStateException(
                            "flink-job batched operator: opening its Python thread failed", cause);
        }
    }

    /** Loads this operator's BatchStep into {@code p} and checks its wire format. */
    private void setUpPython(PythonInterpreter p) {
        p.set("flink_job_spec", spec);
        // Thread mode keeps one interpreter per TaskManager across jobs. A `flink_job` package
        // imported by an earlier job from that job's shipped files (deleted when it ended) is
        // still in sys.modules: importing a submodule it never loaded (`_batch`) would search
        // the deleted directory. Point such a package at this job's copy (its modules already
        // loaded stay as they are: resolver modules loaded by content refer to their classes).
        p.exec(STALE_PACKAGES);
        p.exec("from flink_job._batch import BatchStep as _flink_job_BatchStep");
        p.exec(PY_OBJECT + " = _flink_job_BatchStep.from_spec(flink_job_spec)");
        // A flink_job loaded by an earlier job of another version would misread the batches.
        Object version;
        try {
            version = p.invokeMethod(PY_OBJECT, "wire_version");
        } catch (RuntimeException e) {
            version = null; // a flink_job from before the version check
        }
        if (!(version instanceof Number) || ((Number) version).intValue() != WIRE_VERSION) {
            throw new IllegalStateException(
                    "flink-job's operators jar uses wire format "
                            + WIRE_VERSION
                            + ", but the flink_job package loaded in this TaskManager's Python "
                            + "interpreter uses "
                            + (version == null ? "an older one" : String.valueOf(version))
                            + ": they come from different flink-job versions. In thread mode a "
                            + "TaskManager keeps one Python interpreter across jobs, so the "
                            + "flink_job an earlier job loaded stays loaded; fix: restart the "
                            + "TaskManagers after changing the flink-job version, or run the job "
                            + "in process mode.");
        }
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row row = element.getValue();
        int i = messages.size();
        keyObjects.add(getCurrentKey());
        keyStrings.add((String) row.getField(0));
        messages.add((Tuple) row.getField(1));
        timestamps[i] = element.getTimestamp();
        hasTimestamp[i] = element.hasTimestamp();
        countElements();
        if (i + 1 >= batchSize) {
            flush();
        }
    }

    @Override
    public void endInput() throws Exception {
        drain();
    }

    @Override
    public void close() throws Exception {
        if (batches != null && eventsIn.getCount() > 0) {
            LOG.info(
                    "flink-job batched operator: {} records in {} batches; CPU per record: "
                            + "{} ns in Python, {} ns in the whole flush (state, framing, emit)",
                    eventsIn.getCount(),
                    batches.getCount(),
                    pythonCpuNanos.getCount() / eventsIn.getCount(),
                    flushCpuNanos.getCount() / eventsIn.getCount());
        }
        inFlight = null; // after a failure: its answer is not wanted
        if (python != null) {
            CompletableFuture<Void> closed = new CompletableFuture<>();
            try {
                python.execute(
                        () -> {
                            try {
                                if (pythonInterpreter != null) {
                                    closePython(pythonInterpreter);
                                    pythonInterpreter.close();
                                }
                            } finally {
                                closed.complete(null);
                            }
                        });
                closed.get(); // after the batch it may still be running
            } catch (ExecutionException | RejectedExecutionException e) {
                LOG.warn("flink-job batched operator: closing its Python thread failed", e);
            } finally {
                python.shutdown();
                python = null;
            }
        } else if (interpreter != null) {
            closePython(interpreter);
        }
        super.close();
    }

    private static void closePython(PythonInterpreter p) {
        try {
            p.invokeMethod(PY_OBJECT, "close");
        } catch (RuntimeException e) {
            LOG.warn("flink-job batched operator: closing its Python side failed", e);
        }
    }

    /** A checkpoint barrier, a watermark or finish: every record read so far is applied. */
    @Override
    protected void invokeFinishBundle() throws Exception {
        drain();
    }

    /** One batch from framing to emitting: what it needs after its answer comes back. */
    private static final class Batch {
        final List<Object> keys;
        final long[] timestamps;
        final boolean[] hasTimestamp;
        final int size;
        final CompletableFuture<byte[]> answer = new CompletableFuture<>();
        /** The Python thread's CPU for this batch (set before {@code answer} completes). */
        long pythonCpuNanos;
        /** The answer's counts (read by writeStates, used by emitAnswer). */
        int rows;
        int deadLetters;
        int skipped;
        int late;

        Batch(List<Object> keys, long[] timestamps, boolean[] hasTimestamp, int size) {
            this.keys = keys;
            this.timestamps = timestamps;
            this.hasTimestamp = hasTimestamp;
            this.size = size;
        }
    }

    /** elementCount (the base's "bundle not finished" test): buffered plus in flight. */
    private void countElements() {
        elementCount = messages.size() + (inFlight == null ? 0 : inFlight.size);
    }

    /**
     * A full buffer or the batch timer: with the Python thread, waits for the batch in flight
     * and writes its states, hands the buffer to Python, then emits the answered batch's rows
     * while Python runs; without it, runs the buffer's batch here.
     */
    private void flush() throws Exception {
        long start = threads.getCurrentThreadCpuTime();
        flushDue = false;
        Batch previous = inFlight;
        if (previous != null) {
            inFlight = null;
            writeStates(previous, await(previous));
        }
        Batch next = null;
        byte[] request = null;
        if (!messages.isEmpty()) {
            next = new Batch(new ArrayList<>(), timestamps, hasTimestamp, messages.size());
            timestamps = new long[batchSize];
            hasTimestamp = new boolean[batchSize];
            request = frame(next);
        }
        if (next != null && python != null) {
            submit(next, request);
        }
        if (previous != null) {
            emitAnswer(previous);
        }
        if (next != null && python == null) {
            long pythonStart = threads.getCurrentThreadCpuTime();
            byte[] answer = answerOf(interpreter.invokeMethod(PY_OBJECT, "process", request));
            next.pythonCpuNanos = threads.getCurrentThreadCpuTime() - pythonStart;
            writeStates(next, answer);
            emitAnswer(next);
        }
        finishEmitting(start);
    }

    /**
     * After a flush or an answered batch: counts what is still buffered or in flight, adds the
     * task thread's CPU since {@code start} (Python's too without the Python thread; with it,
     * each batch's Python CPU is added when the batch is emitted), and tells the base that the
     * bundle is finished once nothing is left.
     */
    private void finishEmitting(long start) {
        countElements();
        flushCpuNanos.inc(threads.getCurrentThreadCpuTime() - start);
        if (elementCount == 0) {
            bundleFinished();
        }
    }

    /** Flushes until nothing is buffered or in flight. */
    private void drain() throws Exception {
        flush(); // hands the buffer over (and emits what was in flight)
        if (inFlight != null) {
            flush(); // emits it
        }
    }

    /**
     * The batch timer: flushes, but does not wait for a batch in flight (the buffer goes to
     * Python as soon as that one is answered).
     */
    private void batchTimer() throws Exception {
        if (inFlight != null && !inFlight.answer.isDone()) {
            flushDue = !messages.isEmpty();
            return;
        }
        flush();
    }

    /** The mail the Python thread posts when {@code batch} is answered. */
    private void answered(Batch batch) throws Exception {
        if (inFlight != batch) {
            return; // already emitted by a flush
        }
        if (flushDue) {
            flush(); // hands the buffer to Python before emitting this batch's rows
            return;
        }
        long start = threads.getCurrentThreadCpuTime();
        inFlight = null;
        writeStates(batch, await(batch));
        emitAnswer(batch);
        finishEmitting(start);
    }

    private void submit(Batch batch, byte[] request) {
        inFlight = batch;
        python.execute(
                () -> {
                    long pythonStart = threads.getCurrentThreadCpuTime();
                    try {
                        Object answer =
                                pythonInterpreter.invokeMethod(PY_OBJECT, "process", request);
                        batch.pythonCpuNanos = threads.getCurrentThreadCpuTime() - pythonStart;
                        batch.answer.complete(answerOf(answer));
                    } catch (Throwable e) {
                        batch.answer.completeExceptionally(e);
                    }
                    try {
                        mailbox.execute(() -> answered(batch), "flink-job batch answered");
                    } catch (RejectedExecutionException e) {
                        // The task is ending: a drain or close deals with the batch.
                    }
                });
    }

    private static byte[] await(Batch batch) throws Exception {
        try {
            return batch.answer.get();
        } catch (ExecutionException e) {
            throw rethrown(e);
        }
    }

    private static Exception rethrown(ExecutionException e) {
        Throwable cause = e.getCause();
        if (cause instanceof Exception) {
            return (Exception) cause;
        }
        if (cause instanceof Error) {
            throw (Error) cause;
        }
        return e;
    }

    private static byte[] answerOf(Object answer) {
        if (!(answer instanceof byte[])) {
            throw new IllegalStateException(
                    "flink_job._batch.BatchStep.process returned "
                            + (answer == null ? "null" : answer.getClass().getName())
                            + ", expected bytes");
        }
        return (byte[]) answer;
    }

    private void bundleFinished() {
        if (bundleFinishedCallback != null) {
            Runnable callback = bundleFinishedCallback;
            bundleFinishedCallback = null;
            callback.run();
        }
    }

    /**
     * Frames the buffered records into a request, reading each distinct key's state once, and
     * empties the buffer; {@code batch} gets the distinct keys in order of first appearance.
     */
    private byte[] frame(Batch batch) throws Exception {
        int n = messages.size();
        Object restoreKey = getCurrentKey();
        Map<String, Integer> index = new HashMap<>();
        List<Object> distinct = batch.keys;
        int[] keyIndex = new int[n];
        for (int i = 0; i < n; i++) {
            String k = keyStrings.get(i);
            Integer at = index.get(k);
            if (at == null) {
                at = distinct.size();
                index.put(k, at);
                distinct.add(keyObjects.get(i));
            }
            keyIndex[i] = at;
        }
        out.clear();
        out.writeInt(MAGIC);
        out.writeInt(distinct.size());
        out.writeInt(n);
        String[] names = new String[distinct.size()];
        for (Map.Entry<String, Integer> e : index.entrySet()) {
            names[e.getValue()] = e.getKey();
        }
        for (int k = 0; k < distinct.size(); k++) {
            setCurrentKey(distinct.get(k));
            writeBytes(wtf8(names[k]));
            writeStoredState();
        }
        if (restoreKey != null) {
            setCurrentKey(restoreKey);
        }
        for (int i = 0; i < n; i++) {
            Tuple m = messages.get(i);
            int absent = (Integer) m.getField(MSG_ABSENT);
            out.writeInt(keyIndex[i]);
            out.writeInt(absent);
            out.writeInt((Integer) m.getField(MSG_PARTITION));
            out.writeLong((Long) m.getField(MSG_OFFSET));
            out.writeLong(
                    m.getArity() > MSG_TIMESTAMP ? (Long) m.getField(MSG_TIMESTAMP) : NO_TIMESTAMP);
            // The fixed fields first (one read in Python), then the key's and value's bytes.
            byte[] key = (byte[]) m.getField(MSG_KEY);
            byte[] value = (byte[]) m.getField(MSG_VALUE);
            @SuppressWarnings("unchecked")
            Map<String, byte[]> headers = (Map<String, byte[]>) m.getField(MSG_HEADERS);
            boolean noHeaders = (absent & ABSENT_HEADERS) != 0 || headers == null;
            out.writeInt(key.length);
            out.writeInt(value.length);
            out.writeInt(noHeaders ? 0 : headers.size());
            out.write(key);
            out.write(value);
            if (!noHeaders) {
                for (Map.Entry<String, byte[]> h : headers.entrySet()) {
                    writeBytes(wtf8(h.getKey()));
                    writeNullableBytes(h.getValue());
                }
            }
        }
        keyObjects.clear();
        keyStrings.clear();
        messages.clear();
        return out.getCopyOfBuffer();
    }

    /** Reads {@code answer} up to its rows, writing the new states. */
    private void writeStates(Batch batch, byte[] answer) throws Exception {
        in.setBuffer(answer);
        int nStates = in.readInt();
        batch.rows = in.readInt();
        batch.deadLetters = in.readInt();
        batch.skipped = in.readInt();
        batch.late = in.readInt();
        if (nStates == 0) {
            return;
        }
        Object restoreKey = getCurrentKey();
        for (int s = 0; s < nStates; s++) {
            int k = in.readInt();
            byte[] framed = readFramed();
            setCurrentKey(batch.keys.get(k));
            state.update(Collections.singletonList(framed));
        }
        if (restoreKey != null) {
            setCurrentKey(restoreKey);
        }
    }

    /** Emits the rows and dead letters of the answer that {@link #writeStates} started. */
    private void emitAnswer(Batch batch) throws Exception {
        int nRows = batch.rows;
        int nDead = batch.deadLetters;
        for (int r = 0; r < nRows; r++) {
            int i = in.readInt();
            int keyLength = in.readInt(); // -1: no key
            byte[] value = new byte[in.readInt()];
            long timestamp = in.readLong();
            byte[] k = keyLength < 0 ? EMPTY : new byte[keyLength];
            in.readFully(k);
            in.readFully(value);
            emit(
                    batch,
                    i,
                    rowArity == 2 ? Tuple2.of(k, value) : Tuple3.of(k, value, timestamp),
                    null);
        }
        for (int d = 0; d < nDead; d++) {
            int i = in.readInt();
            byte[] key = readNullableBytes();
            byte[] value = readNullableBytes();
            int nh = in.readInt();
            Map<String, byte[]> headers = new LinkedHashMap<>();
            for (int h = 0; h < nh; h++) {
                String name = new String(readBytes(), StandardCharsets.UTF_8);
                headers.put(name, readNullableBytes());
            }
            emit(batch, i, null, Row.of(key, value, headers));
        }
        eventsIn.inc(batch.size);
        featureRows.inc(nRows);
        deadLetterCount.inc(nDead);
        skipped.inc(batch.skipped);
        lateArrivals.inc(batch.late);
        batches.inc();
        // The base's bundle timer drains (waits for the batch in flight) only when no batch
        // has been emitted for python.fn-execution.bundle.time.
        lastFinishBundleTime = getProcessingTimeService().getCurrentProcessingTime();
        pythonCpuNanos.inc(batch.pythonCpuNanos);
        if (python != null) {
            // On the Python thread: not in the task thread's CPU that flush() counts.
            flushCpuNanos.inc(batch.pythonCpuNanos);
        }
    }

    private void emit(Batch batch, int i, Tuple row, Row deadLetter) {
        StreamRecord<?> record =
                batch.hasTimestamp[i]
                        ? new StreamRecord<>(row != null ? row : deadLetter, batch.timestamps[i])
                        : new StreamRecord<>(row != null ? row : deadLetter);
        if (row != null) {
            @SuppressWarnings("unchecked")
            StreamRecord<Tuple> r = (StreamRecord<Tuple>) record;
            output.collect(r);
        } else {
            @SuppressWarnings("unchecked")
            StreamRecord<Row> r = (StreamRecord<Row>) record;
            output.collect(deadLetters, r);
        }
    }

    /**
     * Writes the current key's stored state into the request: its one element is already
     * framed as the request frames bytes (int32 length, then the payload), so it goes in as
     * it is (length -1 when the key has no state).
     */
    private void writeStoredState() throws Exception {
        Iterable<byte[]> elements = state.get();
        Iterator<byte[]> it = elements == null ? null : elements.iterator();
        if (it == null || !it.hasNext()) {
            out.writeInt(-1);
            return;
        }
        byte[] framed = it.next();
        if (framed.length < 4 || readBe32(framed) != framed.length - 4) {
            throw new IllegalStateException(
                    "state element has an unexpected frame; not written by flink-job");
        }
        out.write(framed);
    }

    /**
     * A state of the answer (int32 length, then the payload) as the state element that holds
     * it, the same frame: one copy out of the answer.
     */
    private byte[] readFramed() throws IOException {
        int len = in.readInt();
        byte[] framed = new byte[len + 4];
        framed[0] = (byte) (len >>> 24);
        framed[1] = (byte) (len >>> 16);
        framed[2] = (byte) (len >>> 8);
        framed[3] = (byte) len;
        in.readFully(framed, 4, len);
        return framed;
    }

    private static int readBe32(byte[] b) {
        return ((b[0] & 0xff) << 24) | ((b[1] & 0xff) << 16) | ((b[2] & 0xff) << 8) | (b[3] & 0xff);
    }

    private void writeBytes(byte[] b) throws IOException {
        out.writeInt(b.length);
        out.write(b);
    }

    private void writeNullableBytes(byte[] b) throws IOException {
        if (b == null) {
            out.writeInt(-1);
        } else {
            writeBytes(b);
        }
    }

    private byte[] readBytes() throws IOException {
        byte[] b = new byte[in.readInt()];
        in.readFully(b);
        return b;
    }

    private byte[] readNullableBytes() throws IOException {
        int len = in.readInt();
        if (len < 0) {
            return null;
        }
        byte[] b = new byte[len];
        in.readFully(b);
        return b;
    }

    /**
     * UTF-8, except that a lone surrogate is encoded as its own 3-byte sequence (WTF-8) instead
     * of being replaced: Python's {@code bytes.decode("utf-8", "surrogatepass")} gives back the
     * very same string, so no Java String can change or fail on its way into Python.
     */
    static byte[] wtf8(String s) {
        int n = s.length();
        byte[] b = new byte[n * 3];
        int j = 0;
        for (int i = 0; i < n; i++) {
            char c = s.charAt(i);
            if (c < 0x80) {
                b[j++] = (byte) c;
            } else if (c < 0x800) {
                b[j++] = (byte) (0xc0 | (c >> 6));
                b[j++] = (byte) (0x80 | (c & 0x3f));
            } else if (Character.isHighSurrogate(c)
                    && i + 1 < n
                    && Character.isLowSurrogate(s.charAt(i + 1))) {
                int cp = Character.toCodePoint(c, s.charAt(++i));
                b[j++] = (byte) (0xf0 | (cp >> 18));
                b[j++] = (byte) (0x80 | ((cp >> 12) & 0x3f));
                b[j++] = (byte) (0x80 | ((cp >> 6) & 0x3f));
                b[j++] = (byte) (0x80 | (cp & 0x3f));
            } else {
                b[j++] = (byte) (0xe0 | (c >> 12));
                b[j++] = (byte) (0x80 | ((c >> 6) & 0x3f));
                b[j++] = (byte) (0x80 | (c & 0x3f));
            }
        }
        byte[] exact = new byte[j];
        System.arraycopy(b, 0, exact, 0, j);
        return exact;
    }
}
