// Sets keys through spymemcached (scripts/record-vectors.ts compiles it with javac against
// /usr/share/java/spymemcached.jar and runs it).
// stdin: line 1 the variant, line 2 the servers "h:p h:p ...", line 3 the weights "1 2 ..." or
// empty, then one key a line. stdout: {"failed": n}
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import net.spy.memcached.AddrUtil;
import net.spy.memcached.ConnectionFactory;
import net.spy.memcached.ConnectionFactoryBuilder;
import net.spy.memcached.DefaultConnectionFactory;
import net.spy.memcached.DefaultHashAlgorithm;
import net.spy.memcached.KetamaConnectionFactory;
import net.spy.memcached.MemcachedClient;
import net.spy.memcached.MemcachedNode;
import net.spy.memcached.KetamaNodeKeyFormatter;

public class Driver {
  public static void main(String[] args) throws Exception {
    BufferedReader r = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    String variant = r.readLine();
    List<InetSocketAddress> addrs = AddrUtil.getAddresses(r.readLine());
    String weightLine = r.readLine().trim();
    List<String> keys = new ArrayList<>();
    for (String l; (l = r.readLine()) != null; ) keys.add(l);
    Map<InetSocketAddress, Integer> weights = new HashMap<>();
    if (!weightLine.isEmpty()) {
      String[] w = weightLine.split(" ");
      for (int i = 0; i < addrs.size(); i++) weights.put(addrs.get(i), Integer.parseInt(w[i]));
    } else if (variant.equals("ketama_weighted")) {
      for (InetSocketAddress a : addrs) weights.put(a, 1);
    }
    ConnectionFactory cf;
    switch (variant) {
      case "native": cf = new DefaultConnectionFactory(); break;
      case "ketama": cf = new KetamaConnectionFactory(); break;
      case "ketama_libmemcached":
      case "ketama_weighted":
        cf = new KetamaConnectionFactory(DefaultConnectionFactory.DEFAULT_OP_QUEUE_LEN, DefaultConnectionFactory.DEFAULT_READ_BUFFER_SIZE,
            DefaultConnectionFactory.DEFAULT_OP_QUEUE_MAX_BLOCK_TIME, DefaultHashAlgorithm.KETAMA_HASH,
            variant.equals("ketama_libmemcached") ? KetamaNodeKeyFormatter.Format.LIBMEMCACHED : KetamaNodeKeyFormatter.Format.SPYMEMCACHED,
            variant.equals("ketama_libmemcached") ? new HashMap<>() : weights);
        break;
      case "consistent_native": cf = new ConnectionFactoryBuilder().setLocatorType(ConnectionFactoryBuilder.Locator.CONSISTENT).build(); break;
      default: throw new IllegalArgumentException(variant);
    }
    MemcachedClient c = new MemcachedClient(cf, addrs);
    // Operations issued before a node is connected are redistributed (SPEC-more-clients 3.2): wait.
    long deadline = System.currentTimeMillis() + 10000;
    while (System.currentTimeMillis() < deadline) {
      boolean all = true;
      for (MemcachedNode n : c.getNodeLocator().getAll()) all &= n.isActive();
      if (all) break;
      Thread.sleep(2);
    }
    int failed = 0;
    for (String k : keys) {
      try {
        if (!c.set(k, 0, "1").get()) failed++;
      } catch (Exception e) {
        failed++;
      }
    }
    c.shutdown();
    System.out.println("{\"failed\": " + failed + "}");
  }
}
