/*
 * The Apache Spark baseline of rpc-bench: Spark's own network-common
 * transport (TransportServer / TransportClient on Netty), driven with the same
 * workloads as the Rust systems. Built and run by scripts/spark-baseline.sh
 * against the jars the `pyspark` package ships.
 *
 * Modes:
 *   bench  --io-mode NIO|EPOLL ...   server and client in this JVM, prints one JSON line
 *   serve  --io-mode M --bind H:P [--response N]
 *                                    a TransportServer answering every RpcRequest with the
 *                                    same body (or N bytes); prints "LISTENING host:port"
 *   load   --io-mode M --connect H:P [--verify] ...
 *                                    drives any server that speaks Spark's frames; with
 *                                    --verify checks every response byte for byte
 *                                    (an echo of the request, or --response bytes of 0x5A)
 * Common options: --payload BYTES --response BYTES --conns N --inflight N
 *   --duration S --warmup S --server-threads N --client-threads N
 *
 * The JSON line holds the measurement only (requests, errors, duration_s, latency
 * percentiles in µs); rpc-bench adds the machine, placement and source fields.
 */

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.spark.network.TransportContext;
import org.apache.spark.network.client.RpcResponseCallback;
import org.apache.spark.network.client.TransportClient;
import org.apache.spark.network.client.TransportClientFactory;
import org.apache.spark.network.server.OneForOneStreamManager;
import org.apache.spark.network.server.RpcHandler;
import org.apache.spark.network.server.StreamManager;
import org.apache.spark.network.server.TransportServer;
import org.apache.spark.network.util.MapConfigProvider;
import org.apache.spark.network.util.TransportConf;

public final class SparkTransportBench {
  /** Fill byte of fixed-size responses, so a verifier can tell them from echoes. */
  static final byte RESPONSE_FILL = 0x5A;

  static final class Options {
    String mode = "bench";
    String ioMode = "EPOLL";
    String bind = "127.0.0.1:0";
    String connect = null;
    int payload = 64;
    int response = -1; // -1: echo the request body
    int conns = 1;
    int inflight = 1;
    double duration = 2.0;
    double warmup = 0.5;
    int serverThreads = 1;
    int clientThreads = 1;
    boolean verify = false;

    static Options parse(String[] args) {
      Options o = new Options();
      int i = 0;
      if (args.length > 0 && !args[0].startsWith("--")) {
        o.mode = args[0];
        i = 1;
      }
      for (; i < args.length; i++) {
        String a = args[i];
        if (a.equals("--verify")) {
          o.verify = true;
          continue;
        }
        if (i + 1 >= args.length) {
          throw new IllegalArgumentException("option " + a + " needs a value");
        }
        String v = args[++i];
        switch (a) {
          case "--io-mode": o.ioMode = v.toUpperCase(); break;
          case "--bind": o.bind = v; break;
          case "--connect": o.connect = v; break;
          case "--payload": o.payload = Integer.parseInt(v); break;
          case "--response": o.response = Integer.parseInt(v); break;
          case "--conns": o.conns = Integer.parseInt(v); break;
          case "--inflight": o.inflight = Integer.parseInt(v); break;
          case "--duration": o.duration = Double.parseDouble(v); break;
          case "--warmup": o.warmup = Double.parseDouble(v); break;
          case "--server-threads": o.serverThreads = Integer.parseInt(v); break;
          case "--client-threads": o.clientThreads = Integer.parseInt(v); break;
          default: throw new IllegalArgumentException("unknown option " + a);
        }
      }
      if (!o.ioMode.equals("NIO") && !o.ioMode.equals("EPOLL")) {
        throw new IllegalArgumentException("--io-mode must be NIO or EPOLL, not " + o.ioMode);
      }
      return o;
    }
  }

  static TransportConf conf(Options o) {
    Map<String, String> m = new HashMap<>();
    m.put("spark.rpc.io.mode", o.ioMode);
    m.put("spark.rpc.io.serverThreads", Integer.toString(o.serverThreads));
    m.put("spark.rpc.io.clientThreads", Integer.toString(o.clientThreads));
    m.put("spark.rpc.io.numConnectionsPerPeer", "1");
    return new TransportConf("rpc", new MapConfigProvider(m));
  }

  /** Answers every RpcRequest with the request's own bytes, or a fixed response. */
  static final class EchoHandler extends RpcHandler {
    private final ByteBuffer fixed;
    private final StreamManager streams = new OneForOneStreamManager();
    final AtomicLong oneWay = new AtomicLong();

    EchoHandler(int response) {
      if (response >= 0) {
        byte[] b = new byte[response];
        Arrays.fill(b, RESPONSE_FILL);
        fixed = ByteBuffer.wrap(b);
      } else {
        fixed = null;
      }
    }

    @Override
    public void receive(TransportClient client, ByteBuffer message, RpcResponseCallback callback) {
      if (fixed != null) {
        callback.onSuccess(fixed.duplicate());
      } else {
        ByteBuffer copy = ByteBuffer.allocate(message.remaining());
        copy.put(message).flip();
        callback.onSuccess(copy);
      }
    }

    @Override
    public void receive(TransportClient client, ByteBuffer message) {
      oneWay.incrementAndGet();
    }

    @Override
    public StreamManager getStreamManager() {
      return streams;
    }
  }

  /** Latencies of one connection, in ns; touched only by its event-loop thread. */
  static final class Recorder {
    long[] samples = new long[1 << 16];
    int n = 0;

    synchronized void add(long ns) {
      if (n == samples.length) {
        samples = Arrays.copyOf(samples, n * 2);
      }
      samples[n++] = ns;
    }
  }

  /** The load: conns x inflight closed-loop chains, each sending its next request from the callback. */
  static final class Load {
    final Options o;
    final byte[] payload;
    volatile int phase = 0; // 0 warmup, 1 measure, 2 drain
    final AtomicLong errors = new AtomicLong();
    final AtomicLong mismatches = new AtomicLong();
    final AtomicInteger liveChains = new AtomicInteger();
    final List<Recorder> recorders = new ArrayList<>();

    Load(Options o) {
      this.o = o;
      payload = new byte[o.payload];
      for (int i = 0; i < payload.length; i++) {
        payload[i] = (byte) (i * 31 + 7);
      }
    }

    void start(TransportClient client) {
      Recorder r = new Recorder();
      synchronized (recorders) {
        recorders.add(r);
      }
      for (int i = 0; i < o.inflight; i++) {
        liveChains.incrementAndGet();
        send(client, r);
      }
    }

    void send(TransportClient client, Recorder r) {
      final long sent = System.nanoTime();
      client.sendRpc(ByteBuffer.wrap(payload), new RpcResponseCallback() {
        @Override
        public void onSuccess(ByteBuffer response) {
          long took = System.nanoTime() - sent;
          if (o.verify && !matches(response)) {
            mismatches.incrementAndGet();
          }
          int p = phase;
          if (p == 1) {
            r.add(took);
          }
          if (p < 2) {
            send(client, r);
          } else {
            liveChains.decrementAndGet();
          }
        }

        @Override
        public void onFailure(Throwable e) {
          if (phase == 1) {
            errors.incrementAndGet();
          }
          liveChains.decrementAndGet();
        }
      });
    }

    boolean matches(ByteBuffer response) {
      if (o.response >= 0) {
        if (response.remaining() != o.response) return false;
        for (int i = response.position(); i < response.limit(); i++) {
          if (response.get(i) != RESPONSE_FILL) return false;
        }
        return true;
      }
      return response.equals(ByteBuffer.wrap(payload));
    }

    String run(List<TransportClient> clients) throws InterruptedException {
      for (TransportClient c : clients) {
        start(c);
      }
      Thread.sleep((long) (o.warmup * 1000));
      phase = 1;
      long t0 = System.nanoTime();
      Thread.sleep((long) (o.duration * 1000));
      phase = 2;
      double elapsed = (System.nanoTime() - t0) / 1e9;
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
      while (liveChains.get() > 0 && System.nanoTime() < deadline) {
        Thread.sleep(5);
      }
      return json(elapsed);
    }

    String json(double elapsed) {
      int total = 0;
      synchronized (recorders) {
        for (Recorder r : recorders) total += r.n;
      }
      long[] all = new long[total];
      int at = 0;
      synchronized (recorders) {
        for (Recorder r : recorders) {
          synchronized (r) {
            System.arraycopy(r.samples, 0, all, at, r.n);
            at += r.n;
          }
        }
      }
      Arrays.sort(all, 0, at);
      double sum = 0;
      for (int i = 0; i < at; i++) sum += all[i];
      // Every latency as (µs, count) pairs, so rpc-bench rebuilds the exact histogram.
      StringBuilder counts = new StringBuilder("[");
      for (int i = 0; i < at; ) {
        long us = all[i] / 1000;
        int j = i;
        while (j < at && all[j] / 1000 == us) j++;
        if (counts.length() > 1) counts.append(',');
        counts.append('[').append(us).append(',').append(j - i).append(']');
        i = j;
      }
      counts.append(']');
      return String.format(
          "{\"requests\":%d,\"errors\":%d,\"mismatches\":%d,\"duration_s\":%.6f,"
              + "\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"p999_us\":%d,\"max_us\":%d,\"mean_us\":%.3f,"
              + "\"io_mode\":\"%s\",\"spark_version\":\"%s\",\"latency_us\":%s}",
          at, errors.get(), mismatches.get(), elapsed,
          pct(all, at, 0.50), pct(all, at, 0.90), pct(all, at, 0.99), pct(all, at, 0.999),
          at == 0 ? 0 : all[at - 1] / 1000, at == 0 ? 0.0 : sum / at / 1000.0,
          o.ioMode, org.apache.spark.network.TransportContext.class.getPackage().getImplementationVersion(),
          counts);
    }

    static long pct(long[] sorted, int n, double q) {
      if (n == 0) return 0;
      int i = (int) Math.ceil(q * n) - 1;
      return sorted[Math.max(0, Math.min(n - 1, i))] / 1000;
    }
  }

  static String[] hostPort(String s) {
    int i = s.lastIndexOf(':');
    if (i < 0) throw new IllegalArgumentException("expected host:port, got " + s);
    return new String[] {s.substring(0, i), s.substring(i + 1)};
  }

  static List<TransportClient> connect(TransportClientFactory f, String host, int port, int conns)
      throws Exception {
    List<TransportClient> clients = new ArrayList<>();
    for (int i = 0; i < conns; i++) {
      clients.add(f.createUnmanagedClient(host, port));
    }
    return clients;
  }

  public static void main(String[] args) throws Exception {
    Options o = Options.parse(args);
    TransportConf conf = conf(o);
    switch (o.mode) {
      case "bench": {
        EchoHandler handler = new EchoHandler(o.response < 0 ? o.payload : o.response);
        try (TransportContext ctx = new TransportContext(conf, handler)) {
          TransportServer server = ctx.createServer("127.0.0.1", 0, new ArrayList<>());
          TransportClientFactory factory = ctx.createClientFactory();
          List<TransportClient> clients = connect(factory, "127.0.0.1", server.getPort(), o.conns);
          Options loadOptions = o;
          String line = new Load(loadOptions).run(clients);
          System.out.println(line);
          for (TransportClient c : clients) c.close();
          factory.close();
          server.close();
        }
        break;
      }
      case "serve": {
        String[] hp = hostPort(o.bind);
        EchoHandler handler = new EchoHandler(o.response);
        TransportContext ctx = new TransportContext(conf, handler);
        TransportServer server = ctx.createServer(hp[0], Integer.parseInt(hp[1]), new ArrayList<>());
        System.out.println("LISTENING " + hp[0] + ":" + server.getPort());
        System.out.flush();
        // Serve until stdin closes or the process is killed.
        while (System.in.read() != -1) {
          // ignore input
        }
        server.close();
        ctx.close();
        break;
      }
      case "load": {
        if (o.connect == null) throw new IllegalArgumentException("load needs --connect host:port");
        String[] hp = hostPort(o.connect);
        try (TransportContext ctx = new TransportContext(conf, new EchoHandler(-1))) {
          TransportClientFactory factory = ctx.createClientFactory();
          List<TransportClient> clients = connect(factory, hp[0], Integer.parseInt(hp[1]), o.conns);
          System.out.println(new Load(o).run(clients));
          for (TransportClient c : clients) c.close();
          factory.close();
        }
        break;
      }
      default:
        throw new IllegalArgumentException("mode must be bench, serve or load, not " + o.mode);
    }
    System.exit(0);
  }
}
