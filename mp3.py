import asyncio, cProfile, pstats, logging
from tests.bench import engine
from service.config import LogSettings
from service.logs import setup_logging
setup_logging(LogSettings())
logging.getLogger().handlers[0].stream = open("/dev/null","w")
async def main():
    await engine.spool_rate(2000)
    pr = cProfile.Profile(); pr.enable()
    await engine.spool_rate(10000)
    pr.disable()
    st = pstats.Stats(pr); st.sort_stats("cumulative").print_stats("service|engine", 40)
asyncio.run(main())
