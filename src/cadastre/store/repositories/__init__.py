"""The repositories of ``SqlAlchemyUnitOfWork``, one module per group of tables."""
