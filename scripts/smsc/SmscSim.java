// Launcher for OpenSMPP's SMSC simulator (Maven Central org.opensmpp:opensmpp-sim), used
// by scripts/smsc.sh, which compiles it with javac against the fetched jars.
//
// It wires up the simulator's own classes exactly as org.smpp.smscsim.Simulator.start()
// does (SMSCListenerImpl, SimulatorPDUProcessorFactory, DeliveryInfoSender, users Table),
// so binds, submit_sm handling, message ids and receipt text are OpenSMPP's. It replaces
// only the interactive menu with a line protocol on stdin, and adds two things:
//   - receipt rules: the receipt's stat is chosen by matching the submit's destination
//     address against regular expressions (property smsctl.receiptRules, "REGEX=STAT ...",
//     first match wins, default DELIVRD; STAT NONE means no receipt is sent);
//   - mobile-originated deliver_sm with real addresses, sent to the sessions bound as a
//     system_id.
// Commands (one a line, fields separated by one TAB), each answered on stdout with a line
// "[smsctl-ctl] ID ok ..." or "[smsctl-ctl] ID error ...":
//   mo<TAB>ID<TAB>SYSTEM_ID<TAB>FROM<TAB>TO<TAB>TEXT   -> "ok sent=N"
//   clients<TAB>ID                                     -> "ok clients=a,b(closed),-(unbound)"
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.Charset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.regex.Pattern;

import org.smpp.SmppObject;
import org.smpp.debug.Debug;
import org.smpp.debug.FileDebug;
import org.smpp.debug.FileEvent;
import org.smpp.pdu.DeliverSM;
import org.smpp.pdu.SubmitSM;
import org.smpp.smscsim.DeliveryInfoSender;
import org.smpp.smscsim.PDUProcessor;
import org.smpp.smscsim.PDUProcessorGroup;
import org.smpp.smscsim.SMSCListenerImpl;
import org.smpp.smscsim.ShortMessageStore;
import org.smpp.smscsim.SimulatorPDUProcessor;
import org.smpp.smscsim.SimulatorPDUProcessorFactory;
import org.smpp.smscsim.util.Table;

public final class SmscSim {
    // Indexed like DeliveryInfoSender.DELIVERED .. REJECTED; NONE: send no receipt.
    private static final List<String> STATES = Arrays.asList(
            "DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD");
    private static final int NONE = -1;

    /** DeliveryInfoSender whose receipt state follows the rules; text format stays OpenSMPP's. */
    static final class RuleSender extends DeliveryInfoSender {
        final List<Pattern> patterns = new ArrayList<>();
        final List<Integer> states = new ArrayList<>();

        RuleSender(String rules) {
            for (String rule : rules.trim().split("\\s+")) {
                if (rule.isEmpty()) continue;
                int eq = rule.lastIndexOf('=');
                String stat = eq > 0 ? rule.substring(eq + 1) : "";
                if (!stat.equals("NONE") && !STATES.contains(stat)) {
                    throw new IllegalArgumentException("receipt rule '" + rule + "' is not REGEX=STAT");
                }
                int state = stat.equals("NONE") ? NONE : STATES.indexOf(stat);
                patterns.add(Pattern.compile(rule.substring(0, eq)));
                states.add(state);
            }
        }

        @Override
        public void submit(PDUProcessor processor, SubmitSM submit, String messageId) {
            String dest = submit.getDestAddr().getAddress();
            int state = DELIVERED;
            for (int i = 0; i < patterns.size(); i++) {
                if (patterns.get(i).matcher(dest).matches()) { state = states.get(i); break; }
            }
            if (state == NONE) {
                System.out.println("[smsctl-ctl] - no receipt for " + messageId + " to " + dest);
                return;
            }
            submit(processor, submit, messageId, state, state == DELIVERED || state == ACCEPTED ? 0 : 1);
        }
    }

    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        String usersFile = System.getProperty("usersFileName", "etc/users.txt"); // as Simulator
        // Same debug/event files and levels as Simulator.main (in the working directory).
        Debug debug = new FileDebug("./", "sim.dbg");
        SmppObject.setDebug(debug);
        SmppObject.setEvent(new FileEvent("./", "sim.evt"));
        debug.activate();
        SmppObject.getEvent().activate();
        debug.deactivate(SmppObject.DRXTXD2);
        debug.deactivate(SmppObject.DPDUD);
        debug.deactivate(SmppObject.DCOMD);
        debug.deactivate(18); // Simulator.DSIMD2

        PDUProcessorGroup processors = new PDUProcessorGroup();
        RuleSender receipts = new RuleSender(System.getProperty("smsctl.receiptRules", ""));
        SimulatorPDUProcessorFactory factory = new SimulatorPDUProcessorFactory(
                processors, new ShortMessageStore(), receipts, new Table(usersFile));
        factory.setDisplayInfo(true); // log every PDU to stdout, as the menu's default does
        SMSCListenerImpl listener = new SMSCListenerImpl(port, true);
        listener.setPDUProcessorFactory(factory);
        receipts.start();
        try {
            listener.start();
        } catch (Exception e) {
            System.out.println("[smsctl-ctl] - fatal cannot listen on port " + port + ": " + e);
            System.exit(1);
        }
        System.out.println("[smsctl-ctl] - ready port=" + port);

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "UTF-8"));
        String line;
        while ((line = in.readLine()) != null) {
            String[] f = line.split("\t", 6);
            String id = f.length > 1 ? f[1] : "-";
            try {
                if (f[0].equals("mo") && f.length == 6) {
                    reply(id, "ok sent=" + mo(processors, f[2], f[3], f[4], f[5]));
                } else if (f[0].equals("clients")) {
                    reply(id, "ok clients=" + clients(processors));
                } else if (!line.isEmpty()) {
                    reply(id, "error unknown command");
                }
            } catch (Exception e) {
                reply(id, "error " + e);
            }
        }
    }

    private static void reply(String id, String text) {
        System.out.println("[smsctl-ctl] " + id + " " + text);
    }

    // Sessions come and go concurrently; the group has no iterator, so copy it.
    private static List<SimulatorPDUProcessor> snapshot(PDUProcessorGroup group) {
        List<SimulatorPDUProcessor> list = new ArrayList<>();
        for (int i = 0; i < group.count(); i++) {
            try {
                list.add((SimulatorPDUProcessor) group.get(i));
            } catch (ArrayIndexOutOfBoundsException e) {
                break;
            }
        }
        return list;
    }

    private static boolean open(SimulatorPDUProcessor p) {
        return p.isActive() && p.getSession().getConnection().isOpened();
    }

    private static String clients(PDUProcessorGroup group) {
        StringBuilder sb = new StringBuilder();
        for (SimulatorPDUProcessor p : snapshot(group)) {
            if (sb.length() > 0) sb.append(',');
            sb.append(p.getSystemId() == null ? "-" : p.getSystemId());
            if (p.getSystemId() == null) sb.append("(unbound)");
            else if (!open(p)) sb.append("(closed)");
        }
        return sb.toString();
    }

    /** Sends one deliver_sm (esm_class 0) to every open session bound as systemId. */
    private static int mo(PDUProcessorGroup group, String systemId, String from, String to,
            String text) throws Exception {
        // The charset's encoder maps what it cannot encode to '?': test by round trip.
        Charset gsm7 = Charset.forName("X-Gsm7Bit");
        boolean gsm = new String(text.getBytes(gsm7), gsm7).equals(text);
        // One SMS: 160 GSM septets (an extension character such as € takes two) or 70 UCS-2 units.
        if (gsm ? text.getBytes(gsm7).length > 160 : text.length() > 70) {
            throw new IllegalArgumentException("text longer than one SMS ("
                    + (gsm ? "160 GSM 7-bit septets" : "70 UCS-2 characters") + ")");
        }
        int sent = 0;
        for (SimulatorPDUProcessor p : snapshot(group)) {
            if (!systemId.equals(p.getSystemId()) || !open(p)) continue;
            DeliverSM d = new DeliverSM();
            d.setSourceAddr(ton(from), npi(from), strip(from));
            d.setDestAddr(ton(to), npi(to), strip(to));
            if (gsm) {
                d.setDataCoding((byte) 0x00);
                d.setShortMessage(text, "X-Gsm7Bit");
            } else {
                d.setDataCoding((byte) 0x08);
                d.setShortMessage(text, "UnicodeBigUnmarked"); // UCS-2 / UTF-16BE
            }
            try {
                p.serverRequest(d);
                sent++;
            } catch (Exception e) {
                System.out.println("[smsctl-ctl] - mo to a session of " + systemId + " failed: " + e);
            }
        }
        return sent;
    }

    // "+4479..." or digits: international/ISDN; anything else: alphanumeric.
    private static byte ton(String a) { return (byte) (a.matches("\\+?[0-9]+") ? 1 : 5); }
    private static byte npi(String a) { return (byte) (a.matches("\\+?[0-9]+") ? 1 : 0); }
    private static String strip(String a) { return a.startsWith("+") ? a.substring(1) : a; }
}
