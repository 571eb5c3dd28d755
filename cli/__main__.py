from aiida_mlqm.cli import main

main()
