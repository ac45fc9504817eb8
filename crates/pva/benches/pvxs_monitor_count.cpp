// pvxs_monitor_count: the reference C++ pvAccess client of the PVA monitor benchmark
// (crates/pva/benches/monitor_load.rs). Monitors every PV named in NAMES_FILE with
// pvxs (the library p4p's client runs on), request field(value,alarm,timeStamp),
// counts updates and gaps (the value is the IOC's tick k: a jump of more than one is a
// lost update) for SECONDS after a warm-up, then prints
//   PVXS events=N gaps=G cpu_s=C rss_kb=R secs=S
// Build: g++ -O2 -std=c++11 -I$PVXS/include -I$EPICS/include -I$EPICS/include/os/Linux
//   -I$EPICS/include/compiler/gcc pvxs_monitor_count.cpp -L... -lpvxs -lCom
#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include <pvxs/client.h>

using namespace pvxs;

static long rss_kb() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return 0;
}

static double cpu_s() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: pvxs_monitor_count NAMES_FILE SECONDS\n";
        return 2;
    }
    std::vector<std::string> names;
    {
        std::ifstream f(argv[1]);
        std::string n;
        while (std::getline(f, n))
            if (!n.empty()) names.push_back(n);
    }
    double secs = std::stod(argv[2]);
    auto ctxt = client::Context::fromEnv();
    std::atomic<uint64_t> events{0}, gaps{0}, first{0};
    std::vector<double> last(names.size(), -1.0);
    std::vector<std::shared_ptr<client::Subscription>> subs;
    for (size_t i = 0; i < names.size(); i++) {
        subs.push_back(ctxt.monitor(names[i])
                           .pvRequest("field(value,alarm,timeStamp)")
                           .maskConnected(true)
                           .maskDisconnected(true)
                           .event([&, i](client::Subscription& sub) {
                               try {
                                   while (auto v = sub.pop()) {
                                       double k = v["value"].as<double>();
                                       if (last[i] < 0) first++;
                                       else if (k > last[i] + 1) gaps += uint64_t(k - last[i] - 1);
                                       last[i] = k;
                                       events++;
                                   }
                               } catch (std::exception&) {
                               }
                           })
                           .exec());
    }
    // warm-up: every PV has a value (or 20 s)
    auto t0 = std::chrono::steady_clock::now();
    while (first.load() < names.size() &&
           std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20))
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    uint64_t e0 = events.load(), g0 = gaps.load();
    double c0 = cpu_s();
    auto s0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(secs));
    double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
    std::cout << "PVXS events=" << (events.load() - e0) << " gaps=" << (gaps.load() - g0)
              << " cpu_s=" << (cpu_s() - c0) << " rss_kb=" << rss_kb() << " secs=" << el
              << " connected=" << first.load() << std::endl;
    return 0;
}
