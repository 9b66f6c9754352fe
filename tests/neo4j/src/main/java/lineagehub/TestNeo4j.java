package lineagehub;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Comparator;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.stream.Stream;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.ConnectorPortRegister;
import org.neo4j.configuration.connectors.ConnectorType;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.kernel.internal.GraphDatabaseAPI;

/**
 * Neo4j Community embedded in this JVM, with the Bolt connector on 127.0.0.1 and
 * authentication on: the real server the test suite runs against.
 *
 * <pre>
 * java -Xmx1g -cp ... lineagehub.TestNeo4j --home DIR --password PW [--port N] [--uri-file F]
 *      [--pagecache MIB] [--keep]
 * </pre>
 *
 * Port 0 (the default) takes a free port. When Bolt accepts logins the URI is printed as
 * {@code bolt://127.0.0.1:PORT} and written atomically to the URI file. The server stops on
 * SIGTERM or when standard input closes (so it never outlives the process that started it),
 * and deletes its home folder unless {@code --keep} is given.
 */
public final class TestNeo4j {
    public static void main(String[] args) {
        try {
            run(args);
        } catch (Throwable e) {
            // Neo4j's own threads would keep the JVM alive after main ends: exit, so the
            // launcher sees the failure instead of waiting for a server that never comes.
            e.printStackTrace();
            System.exit(1);
        }
    }

    private static void run(String[] args) throws Exception {
        Path home = null;
        Path uriFile = null;
        String password = null;
        int port = 0;
        long pagecacheMiB = 256;
        boolean keep = false;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--home" -> home = Path.of(args[++i]);
                case "--uri-file" -> uriFile = Path.of(args[++i]);
                case "--password" -> password = args[++i];
                case "--port" -> port = Integer.parseInt(args[++i]);
                case "--pagecache" -> pagecacheMiB = Long.parseLong(args[++i]);
                case "--keep" -> keep = true;
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        // "-" reads the password from the environment, which keeps it out of process listings.
        if ("-".equals(password)) {
            password = System.getenv("NEO4J_TEST_PASSWORD");
        }
        if (home == null || password == null || password.length() < 8) {
            throw new IllegalArgumentException("--home DIR and --password (8+ characters) are required");
        }
        Files.createDirectories(home);

        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                .setConfig(HttpConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.auth_enabled, true)
                .setConfig(GraphDatabaseSettings.pagecache_memory, pagecacheMiB * 1024 * 1024)
                // The heap bounds the server; a cap below it on transaction memory would refuse
                // big but legitimate batches (a run logging thousands of metric keys at once).
                .setConfig(GraphDatabaseSettings.memory_transaction_global_max_size, 0L)
                .build();
        CountDownLatch stop = new CountDownLatch(1);
        final Path homeDir = home;
        final boolean keepHome = keep;
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            dbms.shutdown();
            if (!keepHome) {
                deleteTree(homeDir);
            }
        }));

        // On a new home the default user gets our password, with no change required at first
        // login; a restart on the same home keeps the password it has.
        var system = dbms.database("system");
        boolean fresh = system.executeTransactionally(
                "SHOW USERS YIELD user, passwordChangeRequired WHERE user = 'neo4j' "
                        + "RETURN passwordChangeRequired AS fresh",
                Map.of(),
                result -> result.hasNext() && (Boolean) result.next().get("fresh"));
        if (fresh) {
            system.executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $pw CHANGE NOT REQUIRED", Map.of("pw", password));
        }
        GraphDatabaseAPI db = (GraphDatabaseAPI) dbms.database("neo4j");
        var bolt = db.getDependencyResolver()
                .resolveDependency(ConnectorPortRegister.class)
                .getLocalAddress(ConnectorType.BOLT);
        String uri = "bolt://127.0.0.1:" + bolt.getPort();
        if (uriFile != null) {
            Path tmp = uriFile.resolveSibling(uriFile.getFileName() + ".tmp");
            Files.writeString(tmp, uri + "\n", StandardCharsets.UTF_8);
            Files.move(tmp, uriFile, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        }
        System.out.println("neo4j ready " + uri);
        System.out.flush();

        // Standard input closing means our parent is gone: stop with it.
        Thread watcher = new Thread(() -> {
            try {
                while (System.in.read() != -1) {
                    // ignore anything written to us
                }
            } catch (IOException ignored) {
                // treated as closed
            }
            stop.countDown();
        });
        watcher.setDaemon(true);
        watcher.start();
        stop.await();
        System.exit(0);
    }

    private static void deleteTree(Path root) {
        if (!Files.exists(root)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(root)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException ignored) {
            // a throw-away folder under the system's temporary directory
        }
    }
}
